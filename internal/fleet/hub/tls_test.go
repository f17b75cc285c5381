package hub

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/nats-io/nats.go"
)

func TestMutualTLS(t *testing.T) {
	pki := testutil.NewPKI(t)
	h := openHub(t, Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{pki.Server},
		ClientCAs:    pki.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}})
	url := h.Server.ClientURL()
	// The hub's own (in-process) connection works without a certificate.
	if !h.Conn.IsConnected() {
		t.Fatal("the hub's in-process connection is down")
	}
	// A client with the CA and its certificate gets in.
	nc, err := nats.Connect(url, nats.Secure(&tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client}, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatalf("mutual TLS client: %v", err)
	}
	ctx := testCtx(t)
	pub, err := NewPublisher(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, blockAt(t, signer(t), "198.51.100.0/24", time.Now())); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	// Without a client certificate, or without TLS, it does not.
	if nc, err := nats.Connect(url, nats.Secure(&tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without a certificate connected")
	}
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a plain-text client connected")
	}
}
