// Package keyfile reads and writes aegis's ed25519 key files. Both the eBPF
// object signatures (bpfguard, `aegis ebpf keygen|sign|verify`) and the
// fleet's change signatures (fleet/change) use ed25519 keys in the same file
// formats, so there is one implementation: one key reads the same, and has
// the same KeyID, everywhere.
//
// Key files are PEM, as openssl writes them: NAME.key holds a "PRIVATE KEY"
// (PKCS#8, mode 0600), NAME.pub a "PUBLIC KEY" (PKIX). Where a public key is
// given inline (a config file), ParsePublicKeyOrBase64 also accepts one line
// of standard base64 of the 32 raw key bytes.
//
// The package is a leaf: it imports only the standard library and keeps no
// state.
package keyfile
