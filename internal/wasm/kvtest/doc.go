// Package kvtest checks that a wasm.KVStore keeps the contract the host
// module relies on: keys scoped by function, expiry, usage accounting and
// an atomic quota. A store's own tests call Run with a constructor; it is
// not used outside tests.
package kvtest
