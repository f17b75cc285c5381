package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/gateway"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// statusLatencies times calls of the admin status API, each of which must
// succeed.
func statusLatencies(t *testing.T, c *Client, calls int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, calls)
	for i := range out {
		start := time.Now()
		if _, err := c.Status(context.Background()); err != nil {
			t.Fatalf("admin status call %d: %v", i, err)
		}
		out[i] = time.Since(start)
	}
	slices.Sort(out)
	return out
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))]
}

// TestAdminAnswersWhileGatewaySaturated: slow clients fill the gateway to
// gateway.max_conns and twice as many keep coming; the admin API on its
// unix socket still answers every call. The latencies are logged for the
// record (go test -v -run TestAdminAnswersWhileGatewaySaturated).
// AEGIS_SATURATION_CLIENTS=20000 repeats it at the scale of issue 12, with
// the cap derived from RLIMIT_NOFILE.
func TestAdminAnswersWhileGatewaySaturated(t *testing.T) {
	testutil.RequireRoot(t)
	maxConns, attackers, calls := 256, 512, 200
	v := os.Getenv("AEGIS_SATURATION_CLIENTS")
	scale := v != ""
	if scale {
		var err error
		if attackers, err = strconv.Atoi(v); err != nil {
			t.Fatalf("AEGIS_SATURATION_CLIENTS=%q: %v", v, err)
		}
		nofile, err := gateway.OpenFilesLimit()
		if err != nil {
			t.Fatal(err)
		}
		if maxConns, err = gateway.MaxConns(0, nofile); err != nil {
			t.Fatal(err)
		}
		maxConns = min(maxConns, attackers)
	}
	n, c, _ := serveConfig(t, func(cfg *config.Config) {
		cfg.Gateway.ReadHeaderTimeout = config.Duration{Duration: time.Hour}
		cfg.Gateway.ReadTimeout = config.Duration{Duration: time.Hour}
		if !scale {
			cfg.Gateway.MaxConns = maxConns
		}
		cfg.Gateway.MaxConnsPerIP = 0
	})
	// Run serves the gateway.
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })

	quiet := statusLatencies(t, c, calls)

	// The attack: each client sends headers and 1 of 1,000 declared body
	// bytes and holds on. At scale the clients run in another process, as
	// an attacker's would, so that their descriptors are not the node's.
	if scale {
		slowClientsProcess(t, n.GatewayAddr().String(), attackers)
	} else {
		for _, c := range slowClients(n.GatewayAddr().String(), attackers) {
			t.Cleanup(func() { c.Close() })
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st := n.GatewayStats()
		rejected := int(st.Rejected["max_conns"])
		// At scale, some of an attacker's dials may fail on its side
		// (SYN backlog): only the cap is asserted.
		if st.Open == maxConns && (scale || rejected == attackers-maxConns) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway holds %d connections and rejected %d, want %d and %d", st.Open, rejected, maxConns, attackers-maxConns)
		}
		time.Sleep(10 * time.Millisecond)
	}

	busy := statusLatencies(t, c, calls)
	st := n.GatewayStats()
	if st.Open != maxConns {
		t.Errorf("the gateway holds %d connections during the calls, want %d", st.Open, maxConns)
	}
	t.Logf("admin status over the unix socket, %d calls: quiet p50 %v p99 %v; with the gateway saturated (%d held, %d rejected, the node at %d open files) p50 %v p99 %v",
		calls, quantile(quiet, .5), quantile(quiet, .99), st.Open, st.Rejected["max_conns"], testutil.OpenFDs(t), quantile(busy, .5), quantile(busy, .99))
}

// slowClients opens n connections to addr that send the headers and 1 of
// 1,000 declared body bytes; a connection refused at once is dropped.
func slowClients(addr string, n int) []net.Conn {
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	dialing := make(chan struct{}, 256)
	for i := range n {
		src := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}[i%4]
		dialing <- struct{}{}
		wg.Go(func() {
			defer func() { <-dialing }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			conn, err := d.Dial("tcp", addr)
			if err != nil {
				return // reset at once: over the cap
			}
			io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		})
	}
	wg.Wait()
	return conns
}

// slowClientsEnv names the gateway address a re-executed test binary runs
// slow clients against (see TestMain).
const slowClientsEnv = "AEGIS_TEST_SLOW_CLIENTS"

// slowClientsMain is the attacker process: it holds its slow clients until
// its standard input closes.
func slowClientsMain(spec string) {
	addr, count, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(count)
	conns := slowClients(addr, n)
	fmt.Printf("ready %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// slowClientsProcess runs n slow clients in a child process until the test
// ends.
func slowClientsProcess(t *testing.T, addr string, n int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", slowClientsEnv, addr, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the slow-client process: %v", err)
	}
	t.Logf("slow-client process: %s", strings.TrimSpace(line))
}
