package admin

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// serve starts a node and its admin API on a private unix socket.
func serve(t *testing.T) (*Client, string) {
	t.Helper()
	_, c, sock := serveConfig(t, func(*config.Config) {})
	return c, sock
}

// serveConfig is serve with changes to the test configuration; it returns
// the node too.
func serveConfig(t *testing.T, change func(*config.Config)) (*node.Node, *Client, string) {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Shield.PinPath = testutil.PinPath(t)
	cfg.Gateway.Listen = "127.0.0.1:0"
	change(&cfg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(n, log)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return n, NewClient(sock), sock
}

// raw sends a body as-is and returns the status and error text.
func raw(t *testing.T, c *Client, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://aegis"+path, strings.NewReader(body))
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSocketMode(t *testing.T) {
	_, sock := serve(t)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listener on a live socket: %v", err)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	c, _ := serve(t)
	ctx := context.Background()
	if _, err := c.Add(ctx, "block", AddRequest{Targets: []string{"192.0.2.1"}}); err != nil {
		t.Fatal(err)
	}
	huge := `{"targets":["` + strings.Repeat("1", MaxBodyBytes) + `"]}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"malformed json", "POST", "/v1/lists/block", `{"targets": [`, 400, "malformed JSON"},
		{"wrong type", "POST", "/v1/lists/block", `{"targets": "192.0.2.2"}`, 400, "malformed JSON"},
		{"wrong ttl type", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2"], "ttl": 600}`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2"], "ttll": "1m"}`, 400, "unknown field"},
		{"trailing data", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2"]} {}`, 400, "trailing data"},
		{"empty body", "POST", "/v1/lists/block", ``, 400, "malformed JSON"},
		{"bad target", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2", "192.0.2.256"]}`, 400, "192.0.2.256"},
		{"bad ttl", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2"], "ttl": "forever"}`, 400, "ttl"},
		{"negative ttl", "POST", "/v1/lists/block", `{"targets": ["192.0.2.2"], "ttl": "-1h"}`, 400, "negative"},
		{"no targets", "POST", "/v1/lists/block", `{"targets": []}`, 400, "no targets"},
		{"unknown list", "POST", "/v1/lists/deny", `{"targets": ["192.0.2.2"]}`, 404, "unknown list"},
		{"path traversal list", "GET", "/v1/lists/..%2f..%2fetc", ``, 404, ""},
		{"huge body", "POST", "/v1/lists/block", huge, 413, "exceeds"},
		{"bad mode", "PUT", "/v1/shield/mode", `{"mode": "off"}`, 400, "mode"},
		{"bad rate class", "PUT", "/v1/shield/rate", `{"class": "tcp", "pps": 5, "burst": 5}`, 400, "class"},
		{"rate without burst", "PUT", "/v1/shield/rate", `{"class": "syn", "pps": 5}`, 400, "burst"},
		{"detach unknown", "POST", "/v1/shield/detach", `{"interface": "nope0"}`, 404, "not attached"},
		{"remove unlisted", "POST", "/v1/lists/block/remove", `{"targets": ["192.0.2.1", "192.0.2.9"]}`, 404, "192.0.2.9"},
		{"wrong method", "DELETE", "/v1/lists/block", ``, 405, ""},
		{"deploy malformed json", "PUT", "/v1/functions/f", `{"module": `, 400, "malformed JSON"},
		{"deploy unknown field", "PUT", "/v1/functions/f", `{"module": "AA==", "route": "/f", "cpu": 1}`, 400, "unknown field"},
		{"deploy wrong type", "PUT", "/v1/functions/f", `{"module": "AA==", "route": "/f", "fuel": "lots"}`, 400, "malformed JSON"},
		{"deploy no module", "PUT", "/v1/functions/f", `{"route": "/f"}`, 400, "module is required"},
		{"deploy not wasm", "PUT", "/v1/functions/f", `{"module": "AAEC", "route": "/f"}`, 400, "invalid module"},
		{"deploy bad route", "PUT", "/v1/functions/f", `{"module": "AA==", "route": "f"}`, 400, "route"},
		{"deploy traversal name", "PUT", "/v1/functions/..%2f..%2fetc", `{"module": "AA==", "route": "/f"}`, 400, "invalid function name"},
		{"deploy huge body", "PUT", "/v1/functions/f", `{"module": "` + strings.Repeat("A", 64<<20) + `"}`, 413, "exceeds"},
		{"remove missing function", "DELETE", "/v1/functions/nope", ``, 404, "no function"},
		{"logs of missing function", "GET", "/v1/functions/nope/logs", ``, 404, "no function"},
		{"logs bad count", "GET", "/v1/functions/nope/logs?n=-1", ``, 400, "non-negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := raw(t, c, tc.method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("got %d %q, want %d containing %q", status, body, tc.status, tc.want)
			}
		})
	}
	list, err := c.List(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Entries) != 1 || list.Entries[0].Prefix.String() != "192.0.2.1/32" {
		t.Errorf("bad requests changed the blocklist: %+v", list.Entries)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Settings.Mode != "enforce" || st.Settings.SYN.PPS != 100 {
		t.Errorf("bad requests changed the settings: %+v", st.Settings)
	}
	if fns, err := c.Functions(ctx); err != nil || len(fns) != 0 {
		t.Errorf("bad requests deployed something: %+v %v", fns, err)
	}
}

func TestActorFromPeerCredentials(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "peer.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			defer c.Close()
			io.ReadAll(c)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := peerActor(c)
	if got.PID != os.Getpid() || got.UID != os.Getuid() {
		t.Errorf("actor %+v, want pid %d uid %d", got, os.Getpid(), os.Getuid())
	}
	if got.String() == "system" {
		t.Error("a peer with credentials reads as system")
	}
}

func TestExpandEscapesTheWildcard(t *testing.T) {
	for _, tc := range []struct{ pattern, value, want string }{
		{pathList, "block", "/v1/lists/block"},
		{pathListRemove, "allow", "/v1/lists/allow/remove"},
		{pathFunction, "../etc", "/v1/functions/..%2Fetc"},
		{pathFunctionLogs, "a b", "/v1/functions/a%20b/logs"},
	} {
		if got := expand(tc.pattern, tc.value); got != tc.want {
			t.Errorf("expand(%q, %q) = %q, want %q", tc.pattern, tc.value, got, tc.want)
		}
	}
}
