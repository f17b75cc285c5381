package change

import (
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
	"path/filepath"
	"strings"
)

// KeyID names a public key in records, reports and metrics: the first
// eight bytes of its SHA-256, in hex — the same id bpfguard gives a key,
// so one key reads the same everywhere.
func KeyID(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// Key files are PEM, as openssl writes them: NAME.key a "PRIVATE KEY"
// (PKCS#8, mode 0600), NAME.pub a "PUBLIC KEY" (PKIX) — the formats of the
// eBPF object signing keys.
const (
	pemPrivateKey = "PRIVATE KEY"
	pemPublicKey  = "PUBLIC KEY"
)

// GenerateKeyFiles creates a key pair and writes it to NAME.key and
// NAME.pub (name may include a directory). It never overwrites a file. It
// returns the paths written.
func GenerateKeyFiles(name string) (keyPath, pubPath string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("encoding private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", "", fmt.Errorf("encoding public key: %w", err)
	}
	keyPath, pubPath = name+".key", name+".pub"
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: pubDER}), 0o644); err != nil {
		return "", "", err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), 0o600); err != nil {
		os.Remove(pubPath)
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("syncing %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

// LoadPrivateKey reads a NAME.key file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != pemPrivateKey {
		return nil, fmt.Errorf("%s: no PEM %q block", path, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: parsing private key: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: private key is %T, not ed25519", path, k)
	}
	return key, nil
}

// ParsePublicKey decodes a public key given as a PEM "PUBLIC KEY" block (a
// NAME.pub file's content) or as standard base64 of the 32 raw key bytes
// (one line, convenient in a config file).
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != pemPublicKey {
			return nil, fmt.Errorf("PEM block is %q, want %q", b.Type, pemPublicKey)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing public key: %w", err)
		}
		key, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T, not ed25519", k)
		}
		return key, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("public key is neither a PEM \"PUBLIC KEY\" nor base64 of 32 bytes")
	}
	return ed25519.PublicKey(raw), nil
}

// LoadPublicKey reads a NAME.pub file (or a file holding base64 of the raw
// key).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
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
