// Package functions is the node's registry of edge functions: it deploys
// (validates, prepares and persists) and removes functions, restores them
// when the node starts, keeps the routing table the gateway answers from
// (routes "[HOST]/PATH", longest match, an immutable table swapped
// atomically on deploy), turns an execution's result or error into the HTTP
// answer (the `aegis-error` header names the cause of a failure), and keeps
// each function's recent log lines.
//
// A deploy compiles the module (through the Executor) without holding the
// registry's lock, so listing and serving go on meanwhile, then switches
// the route atomically: requests already running finish on the version
// they started on, whose compiled module is released when the last of
// them ends. A module that failed to compile is remembered by digest and
// refused at once after. Compiling and execution are behind Executor —
// the in-process Wasm engine for tests and benchmarks of trusted
// fixtures, the sandboxed workers in the node.
//
// It does not execute WebAssembly, parse CGI or talk to the kernel.
package functions
