package keyfile

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

// KeyID names a public key in records, reports, audit entries and metrics:
// the first eight bytes of its SHA-256, in hex.
func KeyID(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// PEM block types of key files: PKCS#8 for the private key, PKIX for the
// public key.
const (
	pemPrivateKey = "PRIVATE KEY"
	pemPublicKey  = "PUBLIC KEY"
)

// Generate creates a key pair.
func Generate() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	return pub, priv, nil
}

// GenerateFiles creates a key pair and writes it to NAME.key (mode 0600)
// and NAME.pub (name may include a directory). It never overwrites a file:
// if either exists, it fails and leaves both as they were. Each file is
// synced before GenerateFiles returns the public key.
func GenerateFiles(name string) (ed25519.PublicKey, error) {
	base := filepath.Base(name)
	if strings.HasSuffix(name, "/") || base == "." || base == ".." || base == "/" {
		return nil, fmt.Errorf("key name %q: want a file name such as ops or keys/ops (it writes NAME.key and NAME.pub)", name)
	}
	if ext := filepath.Ext(base); ext == ".key" || ext == ".pub" {
		return nil, fmt.Errorf("key name %q: give it without %s (it writes NAME.key and NAME.pub)", name, ext)
	}
	pub, priv, err := Generate()
	if err != nil {
		return nil, err
	}
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		return nil, err
	}
	keyPath, pubPath := name+".key", name+".pub"
	if err := writeNew(keyPath, privPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return nil, err
	}
	return pub, nil
}

// writeNew writes a file that must not exist yet and syncs it; on a failure
// after creating it, it removes it.
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
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

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
	return ed25519Key[ed25519.PrivateKey]("private", k, err)
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" holding an ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(data, pemPublicKey)
	if err != nil {
		return nil, err
	}
	return parsePKIX(der)
}

// ParsePublicKeyOrBase64 decodes a public key given as a PEM "PUBLIC KEY"
// block (a NAME.pub file's content) or as standard base64 of the 32 raw key
// bytes (one line, convenient in a config file).
func ParsePublicKeyOrBase64(data []byte) (ed25519.PublicKey, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != pemPublicKey {
			return nil, fmt.Errorf("PEM block is %q, want %q", b.Type, pemPublicKey)
		}
		return parsePKIX(b.Bytes)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("public key is neither a PEM \"PUBLIC KEY\" nor base64 of 32 bytes")
	}
	return ed25519.PublicKey(raw), nil
}

func parsePKIX(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	return ed25519Key[ed25519.PublicKey]("public", k, err)
}

// ed25519Key turns what x509 parsed into a key of type K, or an error
// naming which key ("private", "public") failed.
func ed25519Key[K ed25519.PrivateKey | ed25519.PublicKey](which string, k any, err error) (K, error) {
	if err != nil {
		return nil, fmt.Errorf("parsing %s key: %w", which, err)
	}
	key, ok := k.(K)
	if !ok {
		return nil, fmt.Errorf("%s key is %T, not ed25519", which, k)
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
// It refuses a file that users other than its owner may read, as ssh
// does: a signing key others could copy is no longer the operator's.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	// Parsed first: a public key or another file given here is named for
	// what it is, not told to chmod 600.
	k, err := readKey(path, "private", ParsePrivateKey)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: a private key readable or writable by others (mode %04o): chmod 600 it", path, perm)
	}
	return k, nil
}

// ReadPublicKey reads a public key file (see MarshalPublicKey).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	return readKey(path, "public", ParsePublicKey)
}

// ReadPublicKeyOrBase64 reads a public key file, PEM or one line of base64
// (see ParsePublicKeyOrBase64).
func ReadPublicKeyOrBase64(path string) (ed25519.PublicKey, error) {
	return readKey(path, "public", ParsePublicKeyOrBase64)
}

// maxKeyFile bounds a key file: a PEM ed25519 key is about 120 bytes.
const maxKeyFile = 4 << 10

// readKey reads the key file at path with parse; errors name the file.
func readKey[K ed25519.PrivateKey | ed25519.PublicKey](path, which string, parse func([]byte) (K, error)) (K, error) {
	// A key is a small regular file: a directory or a FIFO (which would
	// block the read for ever) is refused before anything is read.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s key: %w", which, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: not a %s key file (a regular file of at most %d bytes)", path, which, maxKeyFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s key: %w", which, err)
	}
	k, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
