// Package executor runs edge functions in sandbox workers: Executor is the
// functions.Executor the node uses, built on two sandbox.Pools.
//
// The supervisor side (Executor) checks only what a module's bytes show
// (wasm.Precheck); a single-use compile worker (HandlerCompile) compiles
// each version once, at deploy, under CompileTimeout, runs the deploy
// checks that instantiate it and returns the compiled code, which the
// executor keeps (in memory or in Config.CodeDir). Serving workers
// (HandlerWasm) fetch a version's module and code through host calls,
// load the code (never compile) and run invocations; the supervisor
// serves their key-value and fetch calls through a wasm.Guard built from
// the invocation it sent, never from what a worker says, and checks every
// answer (error kinds and statuses, CGI headers, sizes, log lines) before
// use. The messages inside the sandbox's frames are a compact binary
// encoding (wire.go) whose counts are bounded before anything is
// allocated for them.
//
// WorkerHandlers is what a worker binary passes to sandbox.WorkerMain.
//
// The package does not isolate processes (package sandbox does), route
// requests or keep deployments (package functions does), or implement the
// host services (the node's wasm.Host does).
package executor
