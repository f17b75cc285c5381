package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/gateway"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// runNode starts a node and its Run loop, which serves the gateway.
func runNode(t *testing.T, cfg config.Config) *Node {
	t.Helper()
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func helloModule(t *testing.T) []byte {
	t.Helper()
	mod, err := os.ReadFile("../functions/testdata/hello1.wasm")
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

func deployHello(t *testing.T, n *Node) {
	t.Helper()
	if _, err := n.Functions().Deploy(context.Background(), "hello", helloModule(t), functions.Spec{Route: "/hello"}, ""); err != nil {
		t.Fatal(err)
	}
}

func getHello(t *testing.T, n *Node) {
	t.Helper()
	resp, err := http.Get("http://" + n.GatewayAddr().String() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello v1\n" {
		t.Fatalf("GET /hello = %d %q", resp.StatusCode, b)
	}
}

// slowClient sends headers and 1 of 1,000 declared body bytes, then reads
// what comes back until the node closes the connection.
func slowClient(addr net.Addr, src string) (string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx"); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), errors.New("the node did not close the connection")
	}
	return string(b), nil
}

// TestGatewaySlowClientsClosed is the attack of issue 12 on a running node:
// 50 connections send 1 of 1,000 declared body bytes. Each gets 408 and is
// closed at gateway.read_timeout; the node's descriptors come back to where
// they were and the gateway still serves.
func TestGatewaySlowClientsClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Gateway.ReadHeaderTimeout = config.Duration{Duration: 300 * time.Millisecond}
	cfg.Gateway.ReadTimeout = config.Duration{Duration: 300 * time.Millisecond}
	n := runNode(t, cfg)
	deployHello(t, n)
	getHello(t, n)
	http.DefaultClient.CloseIdleConnections()
	testutil.WaitFor(t, "the warm-up connection to close", func() bool { return n.GatewayStats().Open == 0 })
	fds := testutil.OpenFDs(t)

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		src := []string{"127.0.0.1", "127.0.0.2"}[i%2]
		wg.Go(func() {
			got, err := slowClient(n.GatewayAddr(), src)
			if err == nil && !strings.HasPrefix(got, "HTTP/1.1 408 ") {
				err = fmt.Errorf("answer %q, want 408", got)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	testutil.WaitFor(t, "the gateway to hold no connection", func() bool { return n.GatewayStats().Open == 0 })
	testutil.WaitFor(t, fmt.Sprintf("the descriptors to come back to %d", fds), func() bool { return testutil.OpenFDs(t) <= fds })
	if v := metricValue(t, scrape(t, n), "aegis_gateway_connections"); v != 0 {
		t.Errorf("aegis_gateway_connections = %v, want 0", v)
	}
	getHello(t, n)
}

// TestGatewayLimitsReload: SIGHUP's Reload applies new caps to the running
// gateway; a cap the open-files limit cannot honour is refused at reload
// and at start, and changes nothing.
func TestGatewayLimitsReload(t *testing.T) {
	cfg := testConfig(t)
	n := runNode(t, cfg)
	deployHello(t, n)
	nofile, err := gateway.OpenFilesLimit()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := gateway.MaxConns(0, nofile)
	if v := metricValue(t, scrape(t, n), "aegis_gateway_connections_limit"); int(v) != want {
		t.Errorf("aegis_gateway_connections_limit = %v, want %d derived from RLIMIT_NOFILE %d", v, want, nofile)
	}

	next := n.Config()
	next.Gateway.MaxConnsPerIP = 1
	if nofile <= config.MaxGatewayConns {
		next.Gateway.MaxConns = int(nofile)
		if err := n.Reload(next); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "gateway.max_conns") {
			t.Fatalf("Reload with max_conns at RLIMIT_NOFILE = %v, want refused", err)
		}
		if n.Config().Gateway != cfg.Gateway {
			t.Fatalf("a refused reload changed the gateway config to %+v", n.Config().Gateway)
		}
		bad := testConfig(t)
		bad.Gateway.MaxConns = int(nofile)
		if _, err := New(bad, n.log); err == nil || !strings.Contains(err.Error(), "gateway.max_conns") {
			t.Fatalf("starting with max_conns at RLIMIT_NOFILE = %v, want an error naming gateway.max_conns", err)
		}
	} else {
		t.Logf("RLIMIT_NOFILE %d is above any configurable max_conns: the refusal is covered by gateway.TestMaxConns", nofile)
	}

	next.Gateway.MaxConns = 10
	if err := n.Reload(next); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{}
	held, err := d.Dial("tcp", n.GatewayAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	testutil.WaitFor(t, "the held connection", func() bool { return n.GatewayStats().Open == 1 })
	// Over the cap the connection is closed at once (a reset may even
	// come before connect returns): nothing is answered.
	if got, err := slowClient(n.GatewayAddr(), "127.0.0.1"); got != "" || (err != nil && !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("a second connection from one address after max_conns_per_ip 1: %q, %v", got, err)
	}
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	resp, err := other.Get("http://" + n.GatewayAddr().String() + "/hello")
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	resp.Body.Close()
	other.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
	text := scrape(t, n)
	if v := metricValue(t, text, `aegis_gateway_connections_rejected_total{reason="max_conns_per_ip"}`); v != 1 {
		t.Errorf("rejections by max_conns_per_ip = %v, want 1", v)
	}
	if v := metricValue(t, text, "aegis_gateway_connections_limit"); v != 10 {
		t.Errorf("aegis_gateway_connections_limit = %v after reload, want 10", v)
	}
}

// TestMetricsListenerCapped: the optional TCP metrics listener serves
// /metrics under caps of its own, so it is no way around the gateway's.
func TestMetricsListenerCapped(t *testing.T) {
	cfg := testConfig(t)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.MetricsListen = free.Addr().String()
	free.Close()
	runNode(t, cfg)
	url := "http://" + cfg.Admin.MetricsListen + "/metrics"
	var resp *http.Response
	testutil.WaitFor(t, "the metrics listener", func() bool {
		resp, err = http.Get(url)
		return err == nil
	})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "aegis_gateway_connections ") {
		t.Fatalf("GET /metrics = %d, gateway gauge missing", resp.StatusCode)
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Each held connection is proved held by an answer on it: the probe's
	// connection above may still count against the cap for a moment, and a
	// connection over the cap is accepted by the kernel before the server
	// resets it, so a dial alone proves nothing.
	for range metricsLimits.MaxConnsPerIP {
		testutil.WaitFor(t, "a connection under the per-client cap to be served", func() bool {
			c, err := net.Dial("tcp", cfg.Admin.MetricsListen)
			if err != nil {
				return false
			}
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(time.Minute))
			r, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			if err != nil {
				c.Close()
				return false
			}
			held = append(held, c)
			return true
		})
	}
	// The next connection from the address is closed before any answer.
	testutil.WaitFor(t, "a connection over the per-client cap to be refused", func() bool {
		c, err := net.Dial("tcp", cfg.Admin.MetricsListen)
		if err != nil {
			return strings.Contains(err.Error(), "reset")
		}
		defer c.Close()
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(time.Minute))
		got, _ := io.ReadAll(c)
		return len(got) == 0
	})
}
