// Package functions is the node's registry of edge functions: it deploys
// (validates, prepares and persists) and removes functions, restores them
// when the node starts, keeps the routing table the gateway answers from,
// and keeps each function's recent log lines.
//
// A deploy switches the route atomically: requests already running finish
// on the version they started on, whose compiled module is released when
// the last of them ends. Execution itself is behind Executor — the
// in-process Wasm engine for tests and benchmarks, the sandboxed worker
// pool in the node.
//
// It does not execute WebAssembly, parse CGI or talk to the kernel.
package functions
