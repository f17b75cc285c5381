package functions

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/gateway"
)

// gatewayFor serves the fixture's registry through a gateway.Server with
// the given limits.
func gatewayFor(t *testing.T, f *fixture, lim gateway.Limits) *gateway.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := gateway.NewServer(l, f.reg, lim, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() { s.Close(); <-done })
	return s
}

func shortGatewayLimits() gateway.Limits {
	return gateway.Limits{
		ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond, MaxConns: 100,
	}
}

// TestSlowBodyToAFunction: a client that declares 1,000 body bytes and
// sends one gets 408 request-timeout at the gateway's read deadline, the
// function does not run, and the access log names the cause.
func TestSlowBodyToAFunction(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.reg.Deploy(ctx, "hello", module(t, "hello1"), Spec{Route: "/hello"}, ""); err != nil {
		t.Fatal(err)
	}
	s := gatewayFor(t, f, shortGatewayLimits())
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection stayed open: %q", got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") || !strings.Contains(string(got), "Aegis-Error: request-timeout") {
		t.Fatalf("answer %q, want 408 with aegis-error request-timeout", got)
	}
	var logged bool
	f.reg.Logs(ctx, "hello", 10, false, func(l LogLine) error {
		logged = logged || (l.Stream == "access" && l.Attrs["status"] == "408" && l.Attrs["error"] == "request-timeout")
		return nil
	})
	if !logged {
		t.Error("the access log does not record the 408")
	}
	// A client that sends its body in time is served on the same gateway.
	resp, err := http.Post("http://"+s.Addr().String()+"/hello", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello v1\n" {
		t.Fatalf("a prompt client: %d %q", resp.StatusCode, b)
	}
}

// TestFunctionRunsPastTheGatewayTimeouts: a function whose own timeout is
// longer than the gateway's read and write timeouts gets to answer: the
// write deadline counts from the end of its run.
func TestFunctionRunsPastTheGatewayTimeouts(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	lim := shortGatewayLimits()
	// The write timeout is also the room the function's answer has after
	// its own timeout (the executor ends a run a little after it): a busy
	// machine needs more than the 200 ms of the other tests.
	lim.WriteTimeout = time.Second
	fuel := int64(config.MaxFuel)
	timeout := config.Duration{Duration: 2 * (lim.ReadTimeout + lim.WriteTimeout)}
	if _, err := f.reg.Deploy(ctx, "spin", module(t, "spin"), Spec{Route: "/spin", Fuel: &fuel, Timeout: &timeout}, ""); err != nil {
		t.Fatal(err)
	}
	s := gatewayFor(t, f, lim)
	resp, err := http.Post("http://"+s.Addr().String()+"/spin", "text/plain", strings.NewReader("go"))
	if err != nil {
		t.Fatalf("the gateway cut the function's answer: %v", err)
	}
	resp.Body.Close()
	if code, cause := resp.StatusCode, resp.Header.Get(ErrorHeader); code != 503 || cause != "timeout" {
		t.Fatalf("spin = %d %q, want the function's own 503 timeout", code, cause)
	}
}
