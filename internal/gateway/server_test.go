package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// guard bounds how long a test waits for an outcome; reaching it fails the
// test (it is not the measure of anything).
const guard = testutil.WaitTimeout

// shortLimits are small timeouts, so that attacks end within a test.
func shortLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 300 * time.Millisecond,
		ReadTimeout:       300 * time.Millisecond,
		WriteTimeout:      300 * time.Millisecond,
		IdleTimeout:       300 * time.Millisecond,
		MaxConns:          1000,
		MaxHeaderBytes:    8 << 10,
	}
}

// holdLimits keep connections open for as long as a test runs.
func holdLimits() Limits {
	return Limits{
		ReadHeaderTimeout: time.Hour, ReadTimeout: time.Hour, WriteTimeout: time.Hour, IdleTimeout: time.Hour,
		MaxConns: 1000,
	}
}

func startServer(t *testing.T, h http.Handler, lim Limits) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(l, h, lim, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	testutil.WaitFor(t, "the server to start", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.current != nil
	})
	return s
}

// bodyHandler reads the body as the functions registry does: a body that
// misses the read deadline gets 408.
func bodyHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestTimeout)
		return
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	BodyRead(w, r, 0)
	fmt.Fprintf(w, "read %d bytes\n", len(body))
}

// baseline records the descriptors and goroutines before an attack, and
// returns a check that both come back to it once the attack is over.
func baseline(t *testing.T, s *Server) func() {
	fds, gs := testutil.OpenFDs(t), runtime.NumGoroutine()
	return func() {
		t.Helper()
		testutil.WaitFor(t, "the gateway to hold no connection", func() bool { return s.Stats().Open == 0 })
		testutil.WaitFor(t, fmt.Sprintf("the descriptors to come back to %d", fds), func() bool { return testutil.OpenFDs(t) <= fds })
		testutil.WaitFor(t, fmt.Sprintf("the goroutines to come back to %d", gs), func() bool { return runtime.NumGoroutine() <= gs })
	}
}

func dialFrom(t *testing.T, src string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readToEnd reads what the server sends until it closes the connection. It
// fails the test if the connection stays open.
func readToEnd(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(guard))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), fmt.Errorf("the server did not close the connection: %w", err)
	}
	// A reset after the answer is a close too.
	return string(b), nil
}

const slowHead = "POST /fn HTTP/1.1\r\nHost: edge.example\r\nContent-Length: 1000\r\n\r\n"

// TestSlowBodyClosedAtReadTimeout is the attack of issue 12: clients send
// the headers and 1 of 1,000 declared body bytes, then nothing. Each is
// answered 408 and closed at the read deadline, and the node's descriptors
// and goroutines come back to what they were.
func TestSlowBodyClosedAtReadTimeout(t *testing.T) {
	s := startServer(t, http.HandlerFunc(bodyHandler), shortLimits())
	check := baseline(t, s)
	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			if _, err := io.WriteString(c, slowHead+"x"); err != nil {
				errs <- err
				return
			}
			got, err := readToEnd(c)
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
	check()
}

// TestTrickledBodyClosedAtReadTimeout is the variant that defeats an idle
// timer: one byte every sixth of the read timeout. The deadline counts from
// the request's first byte, so the body never completes.
func TestTrickledBodyClosedAtReadTimeout(t *testing.T) {
	lim := shortLimits()
	s := startServer(t, http.HandlerFunc(bodyHandler), lim)
	check := baseline(t, s)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, slowHead); err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		n := 0
		defer func() { sent <- n }()
		for n < 1000 {
			select {
			case <-stop:
				return
			case <-time.After(lim.ReadTimeout / 6):
			}
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
			n++
		}
	}()
	got, err := readToEnd(c)
	close(stop)
	c.Close()
	n := <-sent
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") || n >= 1000 {
		t.Fatalf("after %d of 1000 trickled bytes the answer is %q, want 408 before the body completes", n, got)
	}
	check()
}

// TestSlowBodyUnreadByHandlerClosed: a handler that answers without reading
// the body (404) leaves net/http to drain it; the read deadline bounds that
// too.
func TestSlowBodyUnreadByHandlerClosed(t *testing.T) {
	s := startServer(t, http.NotFoundHandler(), shortLimits())
	check := baseline(t, s)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, slowHead+"x"); err != nil {
		t.Fatal(err)
	}
	got, err := readToEnd(c)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "HTTP/1.1 404 ") {
		t.Fatalf("answer %q", got)
	}
	check()
}

// TestSlowHeadersClosed: headers that never end are cut at the header
// timeout.
func TestSlowHeadersClosed(t *testing.T) {
	s := startServer(t, http.HandlerFunc(bodyHandler), shortLimits())
	check := baseline(t, s)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := readToEnd(c); err != nil {
		t.Fatal(err)
	}
	c.Close()
	check()
}

// TestLargeHeadersRefused: headers over MaxHeaderBytes get 431, so the
// connections reading headers hold bounded memory.
func TestLargeHeadersRefused(t *testing.T) {
	s := startServer(t, http.HandlerFunc(bodyHandler), shortLimits())
	for _, size := range []int{1 << 10, 64 << 10} {
		c := dialFrom(t, "127.0.0.1", s.Addr())
		go io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("x", size)+"\r\nConnection: close\r\n\r\n")
		got, err := readToEnd(c)
		if err != nil {
			t.Fatal(err)
		}
		want := "HTTP/1.1 200 "
		if size > s.Limits().MaxHeaderBytes {
			want = "HTTP/1.1 431 "
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("%d bytes of header: %.40q, want %s", size, got, want)
		}
	}
}

// TestIdleKeepAliveClosed: a kept-alive connection that sends no next
// request is closed at the idle timeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	s := startServer(t, http.HandlerFunc(bodyHandler), shortLimits())
	check := baseline(t, s)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first answer %d (close %v), want 200 kept alive", resp.StatusCode, resp.Close)
	}
	c.SetReadDeadline(time.Now().Add(guard))
	if n, err := br.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read %d, %v; want it closed", n, err)
	}
	c.Close()
	check()
}

// TestClientThatDoesNotReadIsCut: a client that never reads a large answer
// blocks the write; the write deadline ends it and frees the connection.
func TestClientThatDoesNotReadIsCut(t *testing.T) {
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		BodyRead(w, r, 0)
		chunk := make([]byte, 64<<10)
		for range 1 << 12 { // 256 MiB: more than any socket buffers
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})
	s := startServer(t, h, shortLimits())
	check := baseline(t, s)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-writeErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the handler's write ended with %v, want the write deadline", err)
		}
	case <-time.After(guard):
		t.Fatal("the handler is still writing to a client that does not read")
	}
	c.Close()
	check()
}

// TestWriteTimeoutAfterTheRun: a handler that declares a run longer than
// the read and write timeouts (a function's own timeout) still answers, and
// its request is not cancelled when the read deadline passes.
func TestWriteTimeoutAfterTheRun(t *testing.T) {
	lim := shortLimits()
	run := lim.ReadTimeout + lim.WriteTimeout
	ctxErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		BodyRead(w, r, 10*run)
		time.Sleep(2 * run)
		ctxErr <- r.Context().Err()
		io.WriteString(w, "done")
	})
	s := startServer(t, h, lim)
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+s.Addr().String()+"/", strings.NewReader("body"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "done" {
			t.Fatalf("%s: %d %q %v, want 200 done", method, resp.StatusCode, b, err)
		}
		if err := <-ctxErr; err != nil {
			t.Fatalf("%s: the request was cancelled during the run: %v", method, err)
		}
	}
}

// hold opens n connections from src that send nothing and waits until the
// server counts them.
func hold(t *testing.T, s *Server, src string, n int) []net.Conn {
	t.Helper()
	before := s.Stats().Open
	out := make([]net.Conn, n)
	for i := range out {
		out[i] = dialFrom(t, src, s.Addr())
	}
	testutil.WaitFor(t, fmt.Sprintf("%d held connections", n), func() bool { return s.Stats().Open == before+n })
	return out
}

// assertRejected checks that the server closed a fresh connection from src
// at once, without a request being read.
func assertRejected(t *testing.T, s *Server, src string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", s.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before connect returned
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readToEnd(c)
	if err != nil || got != "" {
		t.Fatalf("a connection from %s over the cap: read %q, %v; want it closed at once", src, got, err)
	}
}

// assertServed checks that a request from src is answered.
func assertServed(t *testing.T, s *Server, src string) {
	t.Helper()
	c := dialFrom(t, src, s.Addr())
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := readToEnd(c)
	if err != nil || !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("a request from %s: %q, %v; want 200", src, got, err)
	}
}

// TestPerClientCap: one address holding its cap of connections is refused
// more, while another address is served.
func TestPerClientCap(t *testing.T) {
	lim := holdLimits()
	lim.MaxConnsPerIP = 5
	s := startServer(t, http.HandlerFunc(bodyHandler), lim)
	held := hold(t, s, "127.0.0.1", 5)
	assertRejected(t, s, "127.0.0.1")
	assertRejected(t, s, "127.0.0.1")
	assertServed(t, s, "127.0.0.2")
	if st := s.Stats(); st.Rejected[RejectMaxConnsPerIP] != 2 || st.Rejected[RejectMaxConns] != 0 {
		t.Errorf("rejections %v, want 2 per-IP", st.Rejected)
	}
	// A connection closed frees its place.
	held[0].Close()
	testutil.WaitFor(t, "the closed connection to be released", func() bool { return s.Stats().Open == 4 })
	assertServed(t, s, "127.0.0.1")
}

// TestTotalCap: at the total cap every address is refused until a
// connection closes.
func TestTotalCap(t *testing.T) {
	lim := holdLimits()
	lim.MaxConns = 6
	lim.MaxConnsPerIP = 3
	s := startServer(t, http.HandlerFunc(bodyHandler), lim)
	held := hold(t, s, "127.0.0.1", 3)
	hold(t, s, "127.0.0.2", 3)
	assertRejected(t, s, "127.0.0.3")
	if st := s.Stats(); st.Rejected[RejectMaxConns] != 1 || st.Open != 6 {
		t.Errorf("stats %+v, want 1 rejection at the total cap and 6 open", st)
	}
	held[0].Close()
	testutil.WaitFor(t, "the closed connection to be released", func() bool { return s.Stats().Open == 5 })
	assertServed(t, s, "127.0.0.3")
}

// TestSetLimits: new caps apply at once, new timeouts to new connections,
// and bad limits are refused without a change.
func TestSetLimits(t *testing.T) {
	lim := holdLimits()
	lim.MaxConnsPerIP = 1
	s := startServer(t, http.HandlerFunc(bodyHandler), lim)
	hold(t, s, "127.0.0.1", 1)
	assertRejected(t, s, "127.0.0.1")

	bad := lim
	bad.ReadTimeout = 0
	if err := s.SetLimits(bad); err == nil {
		t.Fatal("SetLimits accepted a zero read timeout")
	}
	if s.Limits() != lim {
		t.Fatalf("a refused SetLimits changed the limits to %+v", s.Limits())
	}

	next := shortLimits()
	next.MaxConnsPerIP = 2
	if err := s.SetLimits(next); err != nil {
		t.Fatal(err)
	}
	// The held connection keeps its hour; the new one gets the new read
	// timeout and the second place.
	c := dialFrom(t, "127.0.0.1", s.Addr())
	if _, err := io.WriteString(c, slowHead+"x"); err != nil {
		t.Fatal(err)
	}
	got, err := readToEnd(c)
	if err != nil || !strings.HasPrefix(got, "HTTP/1.1 408 ") {
		t.Fatalf("a slow body after the new limits: %q, %v; want 408", got, err)
	}
	if st := s.Stats(); st.Rejected[RejectMaxConnsPerIP] != 1 {
		t.Errorf("rejections %v, want only the one before the change", st.Rejected)
	}
}

// fakeListener fails its accepts with the given errors, then hands out
// connections until closed.
type fakeListener struct {
	mu     sync.Mutex
	script []error // nil entries hand out a connection
	closed chan struct{}
	once   sync.Once
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.script) > 0 {
		err := f.script[0]
		f.script = f.script[1:]
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		a, b := net.Pipe()
		go func() { io.Copy(io.Discard, b) }()
		return a, nil
	}
	f.mu.Unlock()
	<-f.closed
	return nil, net.ErrClosed
}

func (f *fakeListener) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestAcceptErrorsBackOff: out of descriptors, accept fails at once every
// time; the loop backs off, doubling to a second, and starts over after a
// success.
func TestAcceptErrorsBackOff(t *testing.T) {
	script := slices.Repeat([]error{syscall.EMFILE}, 10)
	script = append(script, nil, syscall.ENFILE, syscall.EMFILE)
	f := &fakeListener{script: script, closed: make(chan struct{})}
	s, err := NewServer(f, http.NotFoundHandler(), shortLimits(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sleeps []time.Duration
	s.sleep = func(d time.Duration) {
		mu.Lock()
		sleeps = append(sleeps, d)
		mu.Unlock()
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	testutil.WaitFor(t, "the scripted accepts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sleeps) == 12
	})
	s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, 5 * ms, 10 * ms}
	if !slices.Equal(sleeps, want) {
		t.Errorf("backoff %v, want %v", sleeps, want)
	}
	if got := s.Stats().AcceptErrors; got != 12 {
		t.Errorf("%d accept errors counted, want 12", got)
	}
}

func TestClientKey(t *testing.T) {
	key := func(s string) netip.Addr {
		return clientKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)))
	}
	same := [][2]string{
		{"192.0.2.1:1000", "192.0.2.1:2000"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1:2"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("%s and %s count apart (%v, %v)", p[0], p[1], key(p[0]), key(p[1]))
		}
	}
	apart := [][2]string{
		{"192.0.2.1:1", "192.0.2.2:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"},
	}
	for _, p := range apart {
		if key(p[0]) == key(p[1]) {
			t.Errorf("%s and %s count together (%v)", p[0], p[1], key(p[0]))
		}
	}
}

func TestMaxConns(t *testing.T) {
	tests := []struct {
		configured int
		nofile     uint64
		want       int
		err        string
	}{
		{0, 1024, 768, ""},
		{0, 4096, 3072, ""},
		{0, 1 << 20, AutoMaxConnsCeiling, ""},
		{500, 1024, 500, ""},
		{768, 1024, 768, ""},
		{769, 1024, 0, "gateway.max_conns: 769 would leave the node fewer than its reserve of 256 of the 1024 open files (RLIMIT_NOFILE): set at most 768"},
		{100_000, 1 << 20, 100_000, ""},
		{0, 256, 0, "the open-files limit (RLIMIT_NOFILE) is 256, not more than the node's reserve of 256"},
	}
	for _, tt := range tests {
		got, err := MaxConns(tt.configured, tt.nofile)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("MaxConns(%d, %d) = %d, %v; want error %q", tt.configured, tt.nofile, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("MaxConns(%d, %d) = %d, %v; want %d", tt.configured, tt.nofile, got, err, tt.want)
		}
	}
}
