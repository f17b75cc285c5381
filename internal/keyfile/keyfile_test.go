package keyfile

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// From bpfguard's TestKeyFiles: the PEM encoders and parsers round-trip and
// refuse the wrong block or garbage.
func TestMarshalParse(t *testing.T) {
	pub, priv := testKey(t)
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	gotPriv, err := ParsePrivateKey(privPEM)
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	gotPub, err := ParsePublicKey(pubPEM)
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := ParsePublicKey(privPEM); err == nil {
		t.Error("a private key file parsed as a public key")
	}
	if _, err := ParsePrivateKey([]byte("no pem here")); err == nil {
		t.Error("garbage parsed as a private key")
	}
	b64 := []byte(base64.StdEncoding.EncodeToString(pub))
	if _, err := ParsePublicKey(b64); err == nil {
		t.Error("ParsePublicKey accepted base64: only ParsePublicKeyOrBase64 does")
	}
	if _, err := ParsePublicKeyOrBase64(privPEM); err == nil {
		t.Error("a private key file parsed as a public key (or base64)")
	}
	if got, err := ParsePublicKeyOrBase64(pubPEM); err != nil || !got.Equal(pub) {
		t.Fatalf("PEM through ParsePublicKeyOrBase64: %v", err)
	}
}

// From fleet/change's TestKeyFiles: GenerateFiles writes NAME.key (0600)
// and NAME.pub, they read back as one pair, and it never overwrites.
func TestGenerateFiles(t *testing.T) {
	name := filepath.Join(t.TempDir(), "ops")
	gen, err := GenerateFiles(name)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := name+".key", name+".pub"
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", keyPath, err, fi.Mode())
	}
	priv, err := ReadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("NAME.pub does not hold NAME.key's public key")
	}
	if !gen.Equal(pub) {
		t.Fatal("GenerateFiles returned another public key than NAME.pub holds")
	}
	if got, err := ReadPublicKeyOrBase64(pubPath); err != nil || !got.Equal(pub) {
		t.Fatalf("ReadPublicKeyOrBase64 of NAME.pub: %v", err)
	}
	raw, err := ParsePublicKeyOrBase64([]byte(" " + base64.StdEncoding.EncodeToString(pub) + "\n"))
	if err != nil || !raw.Equal(pub) {
		t.Fatalf("base64 public key: %v", err)
	}
	if _, err := GenerateFiles(name); err == nil {
		t.Fatal("GenerateFiles overwrote an existing key")
	}
	if again, err := ReadPrivateKey(keyPath); err != nil || !again.Equal(priv) {
		t.Fatalf("a refused GenerateFiles changed NAME.key: %v", err)
	}
	if _, err := ParsePublicKeyOrBase64([]byte("not a key")); err == nil {
		t.Fatal("ParsePublicKeyOrBase64 accepted garbage")
	}
	if _, err := ReadPrivateKey(pubPath); err == nil || !strings.HasPrefix(err.Error(), pubPath+": ") {
		t.Errorf("ReadPrivateKey of NAME.pub: %v, want an error naming the file", err)
	}
	if _, err := ReadPublicKey(name + ".missing"); err == nil || !strings.HasPrefix(err.Error(), "reading public key: ") {
		t.Errorf("ReadPublicKey of a missing file: %v", err)
	}
	// A private key others may read is not used, whatever it holds.
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPrivateKey(keyPath); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("ReadPrivateKey of a key with mode %04o: %v, want refused", mode, err)
		}
	}
	// A public key given as the private one is named for what it is.
	if _, err := ReadPrivateKey(pubPath); err == nil || strings.Contains(err.Error(), "chmod") {
		t.Errorf("ReadPrivateKey of NAME.pub (mode 0644): %v, want the key's kind named, not chmod", err)
	}
}

// TestKeyFilesThatAreNot: a directory, a FIFO (a read would block for
// ever) and a large file are refused at once as key files; a key name
// that is a directory or carries the extension is refused before
// anything is written.
func TestKeyFilesThatAreNot(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.key")
	if err := os.WriteFile(big, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, fifo, big} {
		if _, err := ReadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "not a private key file") {
			t.Errorf("ReadPrivateKey(%s): %v, want refused as not a key file", path, err)
		}
		if _, err := ReadPublicKey(path); err == nil || !strings.Contains(err.Error(), "not a public key file") {
			t.Errorf("ReadPublicKey(%s): %v, want refused as not a key file", path, err)
		}
	}
	for _, name := range []string{dir + "/", filepath.Join(dir, "ops.key"), filepath.Join(dir, "ops.pub"), "."} {
		if _, err := GenerateFiles(name); err == nil {
			t.Errorf("GenerateFiles(%q) succeeded", name)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("refused names wrote files: %d entries in the directory, want the fifo and the big file", len(entries))
	}
}

func TestKeyID(t *testing.T) {
	pub, _ := testKey(t)
	other, _ := testKey(t)
	id := KeyID(pub)
	if len(id) != 16 || id != KeyID(pub) || id == KeyID(other) {
		t.Fatalf("KeyID %q (other %q): want 16 hex digits, stable, distinct", id, KeyID(other))
	}
	// A known key: the id is the first 8 bytes of SHA-256 of the raw key.
	if got := KeyID(make(ed25519.PublicKey, ed25519.PublicKeySize)); got != "66687aadf862bd77" {
		t.Errorf("KeyID(zero key) = %s", got)
	}
}
