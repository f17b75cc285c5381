// Package sandbox runs untrusted payloads in locked-down worker processes:
// the aegis binary re-executed by a supervisor as `aegis sandbox-worker`.
//
// A worker lives in new user, pid, mount, net, ipc, uts and cgroup
// namespaces, with an empty read-only root (tmpfs + pivot_root), no file
// descriptor but its IPC socket, uid and gid nobody, no capabilities,
// rlimits, a memory and pids cgroup, no_new_privs, dumpable 0, speculative
// store bypass disabled, Landlock denying all filesystem and network
// access, and finally a deny-by-default seccomp filter (package seccomp)
// installed on every thread. The supervisor (Pool) keeps a set of
// workers, sends them requests as framed messages over a socketpair,
// serves their host calls through a HostServer, counts and attributes
// seccomp violations through a user-notification listener, and kills and
// replaces a worker that overruns a deadline, crashes or breaks the
// protocol.
//
// The payload is a Handler chosen by name when the pool is built, from the
// handlers the worker binary passes to WorkerMain; only the supervisor
// picks it, and a payload cannot reach another. This package ships test
// handlers (echo, sleep, crash, call-host, host-loop, syscall-bench) and
// the self-test (escape attempts and the syscall sweep, RunSelftest).
//
// The package knows nothing of what a payload runs: the edge functions'
// Wasm runtime, its wire protocol and the functions.Executor built on a
// Pool are package executor; the seccomp policy and its compiler are
// package seccomp.
//
// Workers run on Linux only, and the supervisor must run as root (it writes
// a two-line uid map: the worker's setup runs as root of its own user
// namespace, then drops to nobody). Elsewhere the package's types build
// (api.go) and NewPool and WorkerMain fail, so that its importers build too.
package sandbox
