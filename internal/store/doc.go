// Package store is the durable state of an aegis node: the block and allow
// lists, a few runtime settings, the deployed edge functions with their
// modules, and the functions' key-value data, kept in a bbolt database
// (state.db) in the node's state directory.
//
// It is for surviving restarts: every write is a single fsynced bbolt
// transaction, rule ids come from a persistent counter and are never reused,
// and per-list counts and an expiry index are maintained in the same
// transaction as the entries they describe.
//
// It is not the data plane: it knows nothing about BPF maps, and the daemon
// is responsible for mirroring what is stored here into the shield. It does
// not enforce capacity limits or the management-address lockout guard.
package store
