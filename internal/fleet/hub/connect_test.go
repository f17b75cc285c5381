package hub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDialWithCredentials: an edge's credentials file (user:password)
// connects to a hub with users; a wrong password, a malformed file and a
// missing one are refused with the file named.
func TestDialWithCredentials(t *testing.T) {
	h := openHub(t, Options{Users: []User{{Name: "edge-1", Password: "s3cret", Role: RoleEdge}}})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	url := []string{h.Server.ClientURL()}
	nc, err := Dial{Servers: url, Credentials: write("good", "edge-1:s3cret\n")}.Connect()
	if err != nil {
		t.Fatalf("connecting with good credentials: %v", err)
	}
	nc.Close()
	if _, err := (Dial{Servers: url, Credentials: write("wrong", "edge-1:guess\n")}).Connect(); err == nil {
		t.Error("a wrong password connected")
	}
	if _, err := (Dial{Servers: url}).Connect(); err == nil {
		t.Error("no credentials connected to a hub with users")
	}
	bad := write("bad", "just-a-token\n")
	if _, err := (Dial{Servers: url, Credentials: bad}).Connect(); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed credentials file: %v", err)
	}
	if _, err := (Dial{Servers: url, Credentials: filepath.Join(dir, "none")}).Connect(); err == nil {
		t.Error("a missing credentials file was accepted")
	}
	if _, err := (Dial{}).Connect(); err == nil {
		t.Error("no servers: connected")
	}
}
