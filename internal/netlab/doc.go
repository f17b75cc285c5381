// Package netlab builds small networks out of network namespaces for
// `aegis lab` and for the tests (internal/testutil wraps it for them): it
// creates and removes named namespaces under /run/netns, runs a function on
// an OS thread of its own inside one (restoring the thread's namespace, or
// discarding the thread if that fails), and crafts Ethernet/IP/transport
// frames with correct lengths and checksums (Packet).
//
// It does not decide addresses or topologies: the lab and each test choose
// theirs. Packet panics on a description it cannot encode; a sender builds
// its descriptions from constants.
package netlab
