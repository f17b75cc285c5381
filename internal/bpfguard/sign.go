package bpfguard

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
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

// KeyID names a public key in reports and audit records: the first eight
// bytes of its SHA-256, in hex.
func KeyID(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey creates a signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// PEM block types of key files: PKCS#8 for the private key, PKIX for the
// public key, as openssl writes them.
const (
	pemPrivateKey = "PRIVATE KEY"
	pemPublicKey  = "PUBLIC KEY"
)

// MarshalPrivateKey encodes a private key as a PEM "PRIVATE KEY" (PKCS#8).
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// MarshalPublicKey encodes a public key as a PEM "PUBLIC KEY" (PKIX).
func MarshalPublicKey(key ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM "PRIVATE KEY" holding an ed25519 key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	der, err := pemBlock(data, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, not ed25519", k)
	}
	return key, nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" holding an ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(data, pemPublicKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	key, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, not ed25519", k)
	}
	return key, nil
}

func pemBlock(data []byte, typ string) ([]byte, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("no PEM %q block", typ)
	}
	if b.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", b.Type, typ)
	}
	return b.Bytes, nil
}

// ReadPrivateKey reads a private key file (see MarshalPrivateKey).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublicKey reads a public key file (see MarshalPublicKey).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
