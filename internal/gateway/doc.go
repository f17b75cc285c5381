// Package gateway is the node's public HTTP front for edge functions: it
// parses routes ("[HOST]/PATH"), keeps an immutable routing table that is
// swapped atomically on deploy, picks the route for each request (longest
// match), and turns an execution's result or error into the HTTP answer,
// with the `aegis-error` header naming the cause of a failure.
//
// It does not execute WebAssembly or store anything: an Executor runs the
// function, and the functions registry builds the table.
package gateway
