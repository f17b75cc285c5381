// Package wasm runs tenants' edge functions: WebAssembly modules that
// answer one HTTP request each, on wazero.
//
// # ABI
//
// A function is a WASI preview 1 command in the CGI style of RFC 3875
// (docs/ABI.md is the reference): the request's metadata is in its
// environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING, CONTENT_TYPE,
// CONTENT_LENGTH, HTTP_* and the rest), its body on stdin; it writes a CGI
// response (Status, Content-Type, Location and other headers, an empty
// line, the body) on stdout; stderr goes to the function's log. It gets no
// preopened directories, no sockets, no host environment, argv is just
// its name; the wall clock and crypto-random are real. The "aegis" host
// module adds key-value storage (kv_get, kv_set with TTL, kv_delete),
// outbound HTTP to the function's allowed hosts (http_fetch) and
// structured logs (log).
//
// # Engine, Module, Serve
//
// An Engine (one per node) compiles each module version once: Compile
// checks it (size, validity, shape limits that bound compile time, imports,
// _start, memory with the tables counted in it), runs the fuel pass
// (package fuel) and compiles the result with wazero, caching compiled
// code in memory and optionally on disk. Module.Serve runs one request on
// a fresh instance, so nothing survives between requests, and reports
// fuel used. Limits bound fuel, time, memory, sizes, fetches and storage;
// a request that breaks one fails with an *Error whose Kind names it and
// whose Header is the aegis-error response header.
//
// # Host calls and policy
//
// Host calls reach a Host (plain data, so a sandboxed worker can proxy
// it) through a Guard that enforces the function's Policy; LocalHost with
// a KVStore and HTTPFetcher is the in-process Host. Host calls, WASI's
// and the host module's, pay fuel for the bytes they move.
//
// This package does not route requests, store modules or run workers:
// the gateway, the function registry and the sandbox do.
package wasm
