// Package fleettest starts what fleet tests outside the fleet packages
// need: an embedded hub on loopback, a publisher on it, and an operator
// key whose public half is a file an edge's fleet.trusted_keys can name.
package fleettest
