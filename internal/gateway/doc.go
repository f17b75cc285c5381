// Package gateway is the node's public HTTP server: it holds the listener
// and bounds what clients can hold of the node: a read deadline for headers
// and body, write and idle timeouts, and caps on open connections in total
// and per client address, over which a connection is closed at accept.
// Limits change while it runs. The node serves its /metrics listener with
// it too.
//
// It does not route, execute WebAssembly or store anything: its handler
// (the functions registry) picks the route and answers the request.
package gateway
