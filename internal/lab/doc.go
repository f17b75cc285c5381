// Package lab is the self-contained demonstration behind `aegis lab`: it
// builds a throwaway topology of three network namespaces (attacker, client,
// edge) joined by veth pairs, runs an `aegis node` child inside the edge
// namespace, floods the edge from the attacker while the client calls an edge
// function, shows a live view of what the shield drops and how the function
// answers, and tears everything down again. With Options.Fleet it builds two
// edges instead, runs a fleet hub in the client namespace, publishes one
// signed block on it and shows both edges dropping that source.
//
// Everything the lab creates is named after one random ID (see [Names]), so
// that [Clean] can find and remove leftovers of a lab that was killed or
// kept with --keep.
//
// Namespaces and frames come from package netlab, the same code the tests
// use through internal/testutil. The lab is not a test harness (testutil
// is, and the binary must not import it) nor a benchmark: the flood is paced to what a small VM
// sustains, and the figures it shows are for people to look at.
package lab
