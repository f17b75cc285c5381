package wasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// runScript runs the hostcalls fixture with script as its body and
// returns its result lines.
func runScript(t *testing.T, m *Module, fn string, host Host, allowed []string, script ...string) []string {
	t.Helper()
	req := getRequest("/", "")
	req.Method, req.Body = "POST", []byte(strings.Join(script, "\n"))
	rec := &logRecorder{}
	resp, err := m.Serve(context.Background(), Invocation{Function: fn, Request: req, Host: host, AllowedHosts: allowed, Log: rec.log})
	if err != nil {
		t.Fatalf("script %q: %v", script, err)
	}
	return strings.Split(strings.TrimSuffix(string(resp.Body), "\n"), "\n")
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKV(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	kv := NewMemoryKV(clock)
	host := &LocalHost{KV: kv, Now: clock}
	l := testLimits()
	l.KVMaxKeyBytes, l.KVMaxValueBytes, l.KVQuotaBytes = 8, 100, 150
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", l)

	wantLines(t, runScript(t, m, "a", host, nil,
		"get k", "set k 3 0", "get k", "set k 5 0", "get k", "del k", "get k", "del k"),
		"get k -1", "set k 0", "get k 3 vvv", "set k 0", "get k 5 vvvvv", "del k 0", "get k -1", "del k 0")

	// Sizes: key over 8 bytes, value over 100.
	wantLines(t, runScript(t, m, "a", host, nil, "set keyistoolong 1 0", "get keyistoolong", "set k 101 0", "set k 100 0"),
		"set keyistoolong -3", "get keyistoolong -3", "set k -3", "set k 0")

	// Quota 150: k holds 1+100; a second 1+48 fits exactly, one byte more
	// does not, and the failed set changes nothing.
	wantLines(t, runScript(t, m, "a", host, nil, "set j 48 0", "set i 1 0", "get j", "set k 50 0", "set i 1 0"),
		"set j 0", "set i -4", "get j 48 "+strings.Repeat("v", 48), "set k 0", "set i 0")
	if u, _ := kv.Usage(context.Background(), "a"); u != 1+50+1+48+1+1 {
		t.Fatalf("usage %d", u)
	}

	// Another function has its own keys and quota.
	wantLines(t, runScript(t, m, "b", host, nil, "get k", "set k 100 0"), "get k -1", "set k 0")
	wantLines(t, runScript(t, m, "a", host, nil, "get i"), "get i 1 v")

	// TTL: gone once the clock passes it, and its bytes no longer count.
	wantLines(t, runScript(t, m, "c", host, nil, "set t 2 1500", "get t"), "set t 0", "get t 2 vv")
	mu.Lock()
	now = now.Add(1500 * time.Millisecond)
	mu.Unlock()
	wantLines(t, runScript(t, m, "c", host, nil, "get t"), "get t -1")
	if u, _ := kv.Usage(context.Background(), "c"); u != 0 {
		t.Fatalf("usage after expiry %d", u)
	}
}

func TestKVWithoutHost(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", testLimits())
	wantLines(t, runScript(t, m, "a", nil, nil, "get k", "set k 1 0", "fetch GET http://example.com/"),
		"get k -8", "set k -8", "fetch -5")
}

func TestLogCall(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", testLimits())
	req := getRequest("/", "")
	req.Method, req.Body = "POST", []byte("log 2 disk almost full\nlog 9 bad level")
	rec := &logRecorder{}
	resp, err := m.Serve(context.Background(), Invocation{Function: "f", Request: req, Log: rec.log})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, strings.Split(strings.TrimSpace(string(resp.Body)), "\n"), "log 0", "log -2")
	lines := rec.all()
	if len(lines) != 1 || lines[0].stream != StreamLog || lines[0].level != "warn" || lines[0].msg != "disk almost full" ||
		lines[0].attrs["source"] != "hostcalls" || lines[0].attrs["line"] != "1" {
		t.Fatalf("log %+v", lines)
	}
}

// fetchServer answers /hello, redirects /away to elsewhere and /here to
// /hello, and records the requests it saw.
func fetchServer(t *testing.T, elsewhere string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string // path and X-Test header of each request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+r.Header.Get("X-Test"))
		mu.Unlock()
		switch r.URL.Path {
		case "/hello":
			w.Header().Set("X-From", "upstream")
			fmt.Fprint(w, "hi "+r.Header.Get("X-Test"))
		case "/big":
			w.Write(make([]byte, 2048))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/away":
			http.Redirect(w, r, elsewhere+"/hello", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/hello", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestFetch(t *testing.T) {
	other, otherSeen := fetchServer(t, "")
	srv, seen := fetchServer(t, other.URL)
	u, _ := url.Parse(srv.URL)
	host := &LocalHost{Fetcher: NewHTTPFetcher(FetcherOptions{AllowPrivateAddrs: true})}
	l := testLimits()
	l.FetchCount, l.FetchMaxBytes, l.FetchTimeout = 3, 1024, time.Second
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", l)
	allowed := []string{u.Host}

	got := runScript(t, m, "f", host, allowed, "fetch GET "+srv.URL+"/hello", "fetch GET "+srv.URL+"/here", "fetch GET "+srv.URL+"/away", "fetch GET "+srv.URL+"/hello")
	// Each answer is "fetch RC STATUS BODYLEN" and the body; RC is the
	// encoded response's length.
	if len(got) < 6 || !strings.HasSuffix(got[0], " 200 4") || got[1] != "hi 1" || // fetched
		!strings.HasSuffix(got[2], " 200 4") || got[3] != "hi 1" || // a redirect on the allowed host is followed
		!strings.Contains(got[4], " 302 ") || !strings.Contains(got[5], "Found") || // one elsewhere is handed over
		got[len(got)-1] != "fetch -6" { // the fourth fetch is over the count
		t.Fatalf("fetches answered:\n%s", strings.Join(got, "\n"))
	}
	if got := otherSeen(); len(got) != 0 {
		t.Fatalf("the redirect to a host not allowed was followed: %v", got)
	}

	wantLines(t, runScript(t, m, "f", host, allowed,
		"fetch GET "+other.URL+"/hello",             // not allowed
		"fetch GET ftp://"+u.Host+"/hello",          // not http
		"fetch GET http://user:pw@"+u.Host+"/hello", // user info
	), "fetch -5", "fetch -2", "fetch -2")

	wantLines(t, runScript(t, m, "f", host, allowed, "fetch GET "+srv.URL+"/big", "fetch GET "+srv.URL+"/slow", "fetch BAD\x01 "+srv.URL),
		"fetch -3", "fetch -7", "fetch -2")
	for _, r := range seen() {
		if !strings.HasSuffix(r, " 1") {
			t.Fatalf("upstream saw %q, without the fixture's X-Test header", r)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	tests := []struct {
		url     string
		allowed []string
		want    bool
	}{
		{"https://api.example/x", []string{"api.example"}, true},
		{"https://api.example:443/x", []string{"api.example"}, true},
		{"http://api.example/x", []string{"api.example"}, true},
		{"https://API.Example/x", []string{"api.example"}, true},
		{"https://api.example:8443/x", []string{"api.example"}, false},
		{"https://api.example:8443/x", []string{"api.example:8443"}, true},
		{"https://api.example/x", []string{"api.example:8443"}, false},
		{"https://sub.api.example/x", []string{"api.example"}, false},
		{"https://api.example.evil/x", []string{"api.example"}, false},
		{"http://[::1]:8080/", []string{"[::1]:8080"}, true},
		{"http://[::1]/", []string{"::1"}, true},
		{"https://api.example/x", nil, false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostAllowed(u, tt.allowed); got != tt.want {
			t.Errorf("hostAllowed(%s, %v) = %v", tt.url, tt.allowed, got)
		}
	}
}

func TestHTTPFetcherRefusesPrivateAddresses(t *testing.T) {
	srv, seen := fetchServer(t, "")
	f := NewHTTPFetcher(FetcherOptions{})
	_, err := f.Fetch(context.Background(), FetchRequest{Method: "GET", URL: srv.URL + "/hello", MaxResponseBytes: 100})
	if !errors.Is(err, errPrivateAddr) || len(seen()) != 0 {
		t.Fatalf("fetch to %s: %v (server saw %q)", srv.URL, err, seen())
	}
}

func TestGuardChecksArguments(t *testing.T) {
	l := testLimits()
	l.FetchCount = 10
	g := NewGuard(&LocalHost{KV: NewMemoryKV(nil), Fetcher: failFetcher{}}, Policy{Function: "f", Limits: l, AllowedHosts: []string{"ok.example"}})
	ctx := context.Background()
	for name, err := range map[string]error{
		"empty key":       g.KVSet(ctx, nil, []byte("v"), 0),
		"negative ttl":    g.KVSet(ctx, []byte("k"), []byte("v"), -time.Second),
		"header newline":  fetchErr(g.Fetch(ctx, FetchRequest{URL: "https://ok.example/", Header: http.Header{"X": {"a\nb"}}})),
		"bad header name": fetchErr(g.Fetch(ctx, FetchRequest{URL: "https://ok.example/", Header: http.Header{"X Y": {"a"}}})),
		"relative url":    fetchErr(g.Fetch(ctx, FetchRequest{URL: "/x"})),
	} {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := g.Fetch(ctx, FetchRequest{URL: "https://ok.example/", Body: make([]byte, l.FetchMaxBytes+1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("body over the limit: %v", err)
	}
}

type failFetcher struct{}

func (failFetcher) Fetch(context.Context, FetchRequest) (FetchResponse, error) {
	return FetchResponse{}, io.ErrUnexpectedEOF
}

func fetchErr(_ FetchResponse, err error) error { return err }

func TestFetchRequestEncoding(t *testing.T) {
	in := FetchRequest{Method: "POST", URL: "https://a.example/x?y=1", Header: http.Header{"X-A": {"1", "2"}, "Content-Type": {"text/plain"}}, Body: []byte("\n\nbody\x00")}
	out, err := DecodeFetchRequest(EncodeFetchRequest(in))
	if err != nil || out.Method != in.Method || out.URL != in.URL || fmt.Sprint(out.Header) != fmt.Sprint(in.Header) || string(out.Body) != string(in.Body) {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	for _, bad := range []string{"", "GET\n\n", "GET  x\n\n", "GET x\nNo colon\n\n", "GET x\nX: 1\n"} {
		if _, err := DecodeFetchRequest([]byte(bad)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestFetchResultAfterSmallBuffer(t *testing.T) {
	srv, _ := fetchServer(t, "")
	u, _ := url.Parse(srv.URL)
	host := &LocalHost{Fetcher: NewHTTPFetcher(FetcherOptions{AllowPrivateAddrs: true})}
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", testLimits())
	got := runScript(t, m, "f", host, []string{u.Host}, "fetchcap 8 "+srv.URL+"/hello", "fetchcap 0 "+srv.URL+"/hello")
	if len(got) != 4 || got[0] == "fetchcap 8" || got[1] != strings.Replace(got[0], "fetchcap", "result", 1)+" 200" {
		t.Fatalf("got %q", got)
	}
}

func TestLogBudget(t *testing.T) {
	m := compileFixture(t, newTestEngine(t), "testdata/hostcalls.wasm", testLimits())
	req := getRequest("/", "")
	req.Method, req.Body = "POST", []byte("stderr 2000\nlog 1 after")
	rec := &logRecorder{}
	resp, err := m.Serve(context.Background(), Invocation{Function: "f", Request: req, Log: rec.log})
	if err != nil || !strings.Contains(string(resp.Body), "stderr 2000") {
		t.Fatalf("%v %v", resp, err)
	}
	lines := rec.all()
	bytes, notes := 0, 0
	for _, l := range lines {
		switch l.stream {
		case StreamStderr, StreamLog:
			bytes += len(l.msg)
		case StreamError:
			notes++
		}
	}
	// 2000 lines of 99 bytes do not fit in the budget: what fits is
	// logged, then one note, and the log call after it is dropped too.
	if bytes > maxLogBytesPerCall || bytes < maxLogBytesPerCall-100 || notes != 1 || lines[len(lines)-1].stream != StreamError {
		t.Fatalf("%d lines, %d bytes, %d notes, last %+v", len(lines), bytes, notes, lines[len(lines)-1])
	}
}
