package bpfguard

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// signatureContext starts every signed message, so an aegis object
// signature can never be replayed as a signature over anything else.
const signatureContext = "aegis-ebpf-object-v1\x00"

// signedMessage is what a signature covers: the context and the object's
// SHA-256. Signing the digest lets a signer work from a recorded digest.
func signedMessage(digest [sha256.Size]byte) []byte {
	return append([]byte(signatureContext), digest[:]...)
}

// Sign returns the detached signature of obj: base64 of the ed25519
// signature over the object's SHA-256, followed by a newline. This is the
// content of FILE.o.sig.
func Sign(obj []byte, key ed25519.PrivateKey) []byte {
	sig := ed25519.Sign(key, signedMessage(sha256.Sum256(obj)))
	return []byte(base64.StdEncoding.EncodeToString(sig) + "\n")
}

// checkSignature reports which key, if any, signed the object with digest.
func checkSignature(digest [sha256.Size]byte, sig []byte, keys []ed25519.PublicKey) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sig)))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, errors.New("the signature is not base64 of a 64-byte ed25519 signature")
	}
	msg := signedMessage(digest)
	for _, k := range keys {
		if ed25519.Verify(k, msg, raw) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("the signature verifies with none of the %d trusted keys", len(keys))
}
