package hub

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ClientTLS builds the TLS configuration of a client of the hub (an edge,
// an operator's CLI, a controller on an external cluster) from PEM files:
// ca verifies the hub (the system roots when empty), cert and key are the
// client's certificate for mutual TLS (none when empty).
func ClientTLS(ca, cert, key string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := readPool(ca)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if cert != "" || key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

// ServerTLS builds the TLS configuration of the hub's listener (or its
// routes) from PEM files; with clientCA, clients must present a
// certificate it signed.
func ServerTLS(cert, key, clientCA string) (*tls.Config, error) {
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
	if clientCA != "" {
		pool, err := readPool(clientCA)
		if err != nil {
			return nil, err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func readPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// Credentials returns the NATS option of a credentials file: a NATS
// credentials file (user JWT and NKey seed, for an external cluster
// with decentralized auth) or a file whose first line is "user:password"
// (the embedded server's hub.users).
func Credentials(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(data, []byte("BEGIN NATS USER JWT")) {
		return nats.UserCredentials(path), nil
	}
	line, _, _ := strings.Cut(string(data), "\n")
	user, pass, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok || user == "" || pass == "" {
		return nil, fmt.Errorf("%s: want a NATS credentials file or one line user:password", path)
	}
	return nats.UserInfo(user, pass), nil
}

// Dial is how an edge, an operator and a controller reach the hub.
type Dial struct {
	// Servers are NATS URLs.
	Servers []string
	// Name names the connection in the server's monitoring.
	Name string
	// Credentials is a file for Credentials; none when empty.
	Credentials string
	// TLS, if set, is used for every server.
	TLS *tls.Config
	// Wait is how long Connect keeps trying before it gives up; 0 fails
	// at the first refusal. An edge connects in the background instead
	// (RetryOnFailedConnect), so that a hub that is away never holds its
	// start.
	Wait time.Duration
	// Background makes Connect return at once and keep trying.
	Background bool
}

// Connect dials the hub. Once connected the connection reconnects
// forever.
func (d Dial) Connect(extra ...nats.Option) (*nats.Conn, error) {
	if len(d.Servers) == 0 {
		return nil, errors.New("no hub servers")
	}
	opts := []nats.Option{nats.Name(d.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if d.Credentials != "" {
		o, err := Credentials(d.Credentials)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if d.TLS != nil {
		opts = append(opts, nats.Secure(d.TLS))
	}
	if d.Background {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	opts = append(opts, extra...)
	url := strings.Join(d.Servers, ",")
	deadline := time.Now().Add(d.Wait)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil || d.Background || !time.Now().Before(deadline) {
			if err != nil {
				return nil, fmt.Errorf("connecting to the hub at %s: %w", url, err)
			}
			return nc, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}
