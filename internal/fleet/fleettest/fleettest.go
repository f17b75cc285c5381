package fleettest

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
)

// Hub is an embedded hub on a free loopback port with a publisher,
// stopped when the test ends.
type Hub struct {
	*hub.Hub
	Pub *hub.Publisher
}

// NewHub starts a hub with its store in a temporary directory.
func NewHub(t testing.TB) *Hub {
	t.Helper()
	h, err := hub.Open(context.Background(), hub.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	pub, err := hub.NewPublisher(context.Background(), h.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return &Hub{Hub: h, Pub: pub}
}

// URL is the hub's client URL.
func (h *Hub) URL() string { return h.Server.ClientURL() }

// Publish signs c with key and publishes it, failing the test on error.
func (h *Hub) Publish(t testing.TB, c change.Change, key ed25519.PrivateKey) {
	t.Helper()
	env, err := change.Sign(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Pub.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
}

// Key is a signing key and its public key's file.
type Key struct {
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
	PubFile string // PEM, for fleet.trusted_keys or fleet.controller_key
	ID      string // keyfile.KeyID
}

// NewKey makes a key pair and writes its public half to a file.
func NewKey(t testing.TB) Key {
	t.Helper()
	pub, priv, err := keyfile.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keyfile.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return Key{Private: priv, Public: pub, PubFile: path, ID: keyfile.KeyID(pub)}
}
