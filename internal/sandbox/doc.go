// Package sandbox runs untrusted payloads in locked-down worker processes:
// the aegis binary re-executed by a supervisor as `aegis sandbox-worker`.
//
// A worker lives in new user, pid, mount, net, ipc, uts and cgroup
// namespaces, with an empty read-only root (tmpfs + pivot_root), no file
// descriptor but its IPC socket, uid and gid nobody, no capabilities,
// rlimits, no_new_privs, dumpable 0, speculative store bypass disabled,
// Landlock denying all filesystem and network access, and finally a
// deny-by-default seccomp filter (package seccomp) installed on every
// thread. The supervisor (Pool) keeps a set of workers, sends them
// requests as framed messages over a socketpair, serves their host calls
// itself, counts and attributes seccomp violations through a
// user-notification listener, and kills and replaces a worker that
// overruns a deadline, crashes or breaks the protocol.
//
// The payload is a Handler chosen by name when the pool is built; this
// package ships the wasm and wasm-compile handlers (edge functions, see
// Executor), test handlers (echo, sleep, crash, call-host) and the
// self-test (escape attempts and the syscall sweep), which the supervisor
// selects and a payload cannot. Executor is the functions.Executor the
// node runs functions with: the supervisor checks only what a module's
// bytes show; a single-use compile worker compiles each version once at
// deploy, under a deadline, and runs the checks that instantiate it; the
// supervisor keeps the bytes and the compiled code and serves the serving
// workers' host calls (module bytes and code, key-value store, fetch)
// through a wasm.Guard built from the invocation it sent; serving workers
// load the code and run the modules, never compile them. The package
// does not implement the host services themselves (the node's wasm.Host
// does), nor route requests (the functions registry does).
//
// The package is Linux-only and the supervisor must run as root (it writes
// a two-line uid map: the worker's setup runs as root of its own user
// namespace, then drops to nobody).
package sandbox
