// Package change is the fleet's signed change record: what an operator (or
// the fleet controller) publishes and every edge verifies before it touches
// its store or maps.
//
// # Records
//
// A Change is one list entry, one rate setting or one function's route and
// limits, put or deleted (a deletion is a signed tombstone, never an
// unsigned KV delete). Its payload is JSON; the Envelope carries the exact
// payload bytes, the signer's key id and an ed25519 signature over
// SignatureContext followed by those bytes. Signing the bytes, not a
// re-encoding, means no canonical JSON is needed: the verifier checks what
// it will parse.
//
// SignBatch signs many changes with one signature over the root of a
// Merkle tree of their payloads; each envelope carries its audit path
// (Batch) and still verifies alone, while a Verifier pays one signature
// verification per batch.
//
// Each change names the storage key it belongs under (KeyFor: derived from
// kind, list and prefix, or rate class, or function name) and an edge
// refuses a record stored under any other key, so a valid record cannot be
// replayed to another key.
//
// # Trust
//
// A Verifier holds the trusted keys and their roles: an operator key may
// sign anything; the controller key only automatic-block promotions
// (blocklist puts with an expiry at most MaxTTL after issue, prefixes no
// broader than /24 IPv4 or /48 IPv6). Check returns a *Refusal whose
// Reason is one of a fixed set of strings (Reasons), suitable as a
// metrics label.
//
// # Ordering
//
// IssuedAt (Unix ns, the signer's clock) orders changes for one key: the
// newest wins, and a change that is not Newer than the one applied is a
// no-op. ExpiresAt is absolute, from the signer.
package change
