// Package gateway is the node's public HTTP front for edge functions: it
// parses routes ("[HOST]/PATH"), keeps an immutable routing table that is
// swapped atomically on deploy, picks the route for each request (longest
// match), and turns an execution's result or error into the HTTP answer,
// with the `aegis-error` header naming the cause of a failure.
//
// Its Server holds the listener and bounds what clients can hold of the
// node: a read deadline for headers and body, write and idle timeouts, and
// caps on open connections in total and per client address, over which a
// connection is closed at accept. Limits change while it runs.
//
// It does not execute WebAssembly or store anything: an Executor runs the
// function, and the functions registry builds the table and is the
// Server's handler.
package gateway
