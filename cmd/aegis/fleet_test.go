package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/follow"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/fleet/report"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// fleetPatience bounds every wait of these tests.
const fleetPatience = 30 * time.Second

// fleetFixture is an embedded hub and an operator key made by
// `aegis fleet keygen`.
type fleetFixture struct {
	t   *testing.T
	dir string
	h   *hub.Hub
	url string
	pub ed25519.PublicKey
	v   *change.Verifier
	env map[string]string
}

func newFleetFixture(t *testing.T) *fleetFixture {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), fleetPatience)
	defer cancel()
	h, err := hub.Open(ctx, hub.Options{StoreDir: filepath.Join(dir, "hub"), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	fx := &fleetFixture{t: t, dir: dir, h: h, url: h.Server.ClientURL()}
	fx.env = map[string]string{"AEGIS_FLEET_SERVER": fx.url, "AEGIS_FLEET_KEY": filepath.Join(dir, "op.key")}

	code, out, errOut := fx.cli("fleet", "keygen", filepath.Join(dir, "op"))
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	fx.pub, err = keyfile.ReadPublicKey(filepath.Join(dir, "op.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, keyfile.KeyID(fx.pub)) {
		t.Errorf("keygen printed %q, want the key id %s", out, keyfile.KeyID(fx.pub))
	}
	if st, err := os.Stat(filepath.Join(dir, "op.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("op.key: %v, %v; want mode 0600", st, err)
	}
	fx.v, err = change.NewVerifier(change.Policy{Operators: []ed25519.PublicKey{fx.pub}})
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fleetFixture) cli(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut, func(k string) string { return fx.env[k] })
	return code, out.String(), errOut.String()
}

// ok runs the command and fails the test unless it exits 0.
func (fx *fleetFixture) ok(args ...string) string {
	fx.t.Helper()
	code, out, errOut := fx.cli(args...)
	if code != 0 {
		fx.t.Fatalf("aegis %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func (fx *fleetFixture) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), fleetPatience)
	fx.t.Cleanup(cancel)
	return ctx
}

// record reads the record under key and verifies it as an edge would.
func (fx *fleetFixture) record(key string) change.Change {
	fx.t.Helper()
	e, err := fx.h.KV.Get(fx.ctx(), key)
	if err != nil {
		fx.t.Fatalf("reading %s: %v", key, err)
	}
	env, err := change.Decode(e.Value())
	if err != nil {
		fx.t.Fatal(err)
	}
	env.StoredKey = key
	c, err := fx.v.Check(env, time.Now())
	if err != nil {
		fx.t.Fatalf("%s does not verify: %v", key, err)
	}
	return c
}

// lastSeq is the change bucket's last revision: 0 while nothing was
// published.
func (fx *fleetFixture) lastSeq() uint64 {
	fx.t.Helper()
	rev, err := hub.LastRevision(fx.ctx(), fx.h.JS)
	if err != nil {
		fx.t.Fatal(err)
	}
	return rev
}

func TestFleetBlockAddRmLs(t *testing.T) {
	fx := newFleetFixture(t)
	before := time.Now()
	out := fx.ok("fleet", "block", "add", "198.51.100.0/24", "2001:db8::/48", "--ttl", "1h", "--reason", "scanner")
	if !strings.Contains(out, "added 2 to the fleet blocklist") {
		t.Errorf("add printed %q", out)
	}
	c := fx.record("list.block.198-51-100-0_24")
	if c.Op != change.OpPut || c.Reason != "scanner" || c.KeyID != keyfile.KeyID(fx.pub) {
		t.Errorf("record %+v", c)
	}
	if c.ExpiresAt-c.IssuedAt != int64(time.Hour) || c.IssuedAt < before.UnixNano() || c.IssuedAt > time.Now().UnixNano() {
		t.Errorf("issued %d, expires %d: want expires_at = issued_at + 1h, issued now", c.IssuedAt, c.ExpiresAt)
	}
	if c := fx.record("list.block.2001-db8--_48"); c.Op != change.OpPut {
		t.Errorf("record %+v", c)
	}
	fx.ok("fleet", "allow", "add", "192.0.2.7")
	if c := fx.record("list.allow.192-0-2-7_32"); c.ExpiresAt != 0 || c.List != change.Allowlist {
		t.Errorf("allow record %+v: want permanent", c)
	}

	out = fx.ok("fleet", "block", "ls")
	for _, want := range []string{"198.51.100.0/24", "2001:db8::/48", "scanner", keyfile.KeyID(fx.pub)} {
		if !strings.Contains(out, want) {
			t.Errorf("ls does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "192.0.2.7") {
		t.Errorf("block ls shows an allowlist entry:\n%s", out)
	}

	out = fx.ok("fleet", "block", "rm", "198.51.100.0/24", "203.0.113.9")
	if !strings.Contains(out, "removed 1 from the fleet blocklist") || !strings.Contains(out, "not in the fleet blocklist (nothing published for them): 203.0.113.9/32") {
		t.Errorf("rm printed %q", out)
	}
	if c := fx.record("list.block.198-51-100-0_24"); c.Op != change.OpDelete {
		t.Errorf("after rm: %+v, want a signed tombstone", c)
	}
	if _, err := fx.h.KV.Get(fx.ctx(), "list.block.203-0-113-9_32"); err == nil {
		t.Error("rm of an entry the fleet does not hold published a tombstone")
	}

	var ls struct{ Entries []fleetEntry }
	if err := json.Unmarshal([]byte(fx.ok("fleet", "block", "ls", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Entries) != 1 || ls.Entries[0].Prefix.String() != "2001:db8::/48" || ls.Entries[0].Expires.IsZero() ||
		ls.Entries[0].KeyID != keyfile.KeyID(fx.pub) {
		t.Errorf("ls --json after rm = %+v, want only 2001:db8::/48", ls.Entries)
	}
}

// TestFleetTrustedKeys: a record signed by a key nobody trusts, dated a
// year ahead, makes every operator change of its key look stale; with
// --trusted-key (or AEGIS_FLEET_TRUSTED_KEYS) it counts for nothing and
// is overwritten, while a listed operator's newer record still stands. A
// --trusted-key that does not read publishes nothing.
func TestFleetTrustedKeys(t *testing.T) {
	fx := newFleetFixture(t)
	dir := t.TempDir()
	fx.ok("fleet", "keygen", filepath.Join(dir, "colleague"))
	colleague, err := keyfile.ReadPrivateKey(filepath.Join(dir, "colleague.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, rogue, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hold := func(prefix string, key ed25519.PrivateKey, issued time.Time) {
		env, err := change.Sign(change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
			Prefix: netip.MustParsePrefix(prefix), IssuedAt: issued.UnixNano()}, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fx.h.KV.Put(fx.ctx(), env.StoredKey, env.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	hold("198.51.100.0/24", rogue, time.Now().AddDate(1, 0, 0))
	hold("203.0.113.0/24", rogue, time.Now().AddDate(1, 0, 0))
	hold("192.0.2.0/24", colleague, time.Now().Add(time.Minute)) // a colleague's, a minute ahead: within the skew

	if code, _, errOut := fx.cli("fleet", "block", "add", "198.51.100.0/24"); code != 1 || !strings.Contains(errOut, "newer change") {
		t.Fatalf("without trusted keys: exit %d (%s), want 1 naming the newer change", code, errOut)
	}
	before := fx.lastSeq()
	if code, _, errOut := fx.cli("fleet", "block", "add", "198.51.100.0/24", "--trusted-key", filepath.Join(dir, "missing.pub")); code == 0 || fx.lastSeq() != before {
		t.Fatalf("a missing --trusted-key: exit %d (%s), published %v", code, errOut, fx.lastSeq() != before)
	}
	fx.ok("fleet", "block", "add", "198.51.100.0/24", "--trusted-key", filepath.Join(dir, "colleague.pub"))
	if c := fx.record("list.block.198-51-100-0_24"); c.KeyID != keyfile.KeyID(fx.pub) {
		t.Errorf("the forged record was not overwritten: %+v", c)
	}
	fx.env["AEGIS_FLEET_TRUSTED_KEYS"] = filepath.Join(dir, "colleague.pub")
	fx.ok("fleet", "block", "add", "203.0.113.0/24")
	if c := fx.record("list.block.203-0-113-0_24"); c.KeyID != keyfile.KeyID(fx.pub) {
		t.Errorf("AEGIS_FLEET_TRUSTED_KEYS: the forged record was not overwritten: %+v", c)
	}
	if code, _, errOut := fx.cli("fleet", "block", "add", "192.0.2.0/24"); code != 1 || !strings.Contains(errOut, "newer change") {
		t.Errorf("over a trusted colleague's newer record: exit %d (%s), want 1", code, errOut)
	}
}

func TestFleetImport(t *testing.T) {
	fx := newFleetFixture(t)
	var b strings.Builder
	b.WriteString("# a netset\n\n")
	const n = 300 // above PublishMany's one-by-one threshold
	for i := range n {
		fmt.Fprintf(&b, "10.%d.%d.0/24 # entry %d\n", i/256, i%256, i)
	}
	file := filepath.Join(fx.dir, "list.netset")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := fx.ok("fleet", "block", "import", file, "--ttl", "24h", "--reason", "feed")
	if !strings.Contains(out, fmt.Sprintf("imported %d to the fleet blocklist (%d published", n, n)) {
		t.Errorf("import printed %q", out)
	}
	keys, err := fx.h.KV.ListKeys(fx.ctx())
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for k := range keys.Keys() {
		c := fx.record(k)
		if c.ExpiresAt-c.IssuedAt != int64(24*time.Hour) || c.Reason != "feed" {
			t.Fatalf("%s: %+v", k, c)
		}
		count++
	}
	if count != n {
		t.Errorf("%d records on the hub, want %d", count, n)
	}
	env, err := fx.h.KV.Get(fx.ctx(), "list.block.10-0-0-0_24")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := change.Decode(env.Value()); e.Batch == nil || e.Batch.Size != min(n, change.ImportBatch) {
		t.Errorf("record not batch-signed in a batch of %d: %+v", min(n, change.ImportBatch), e.Batch)
	}

	// Importing the same file again publishes only newer records: all of
	// them, as they are signed anew.
	before := fx.lastSeq()
	fx.ok("fleet", "block", "import", file)
	if got := fx.lastSeq(); got != before+n {
		t.Errorf("second import: last revision %d, want %d", got, before+n)
	}

	// A bad line refuses the whole file.
	if err := os.WriteFile(file, []byte("10.9.0.0/24\nnot-an-address\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before = fx.lastSeq()
	if code, _, errOut := fx.cli("fleet", "block", "import", file); code != 1 || !strings.Contains(errOut, ":2:") {
		t.Errorf("import of a bad file: exit %d, %q; want 1 naming line 2", code, errOut)
	}
	if fx.lastSeq() != before {
		t.Error("a bad import file published something")
	}
}

func TestFleetRate(t *testing.T) {
	fx := newFleetFixture(t)
	fx.ok("fleet", "rate", "syn", "--pps", "100")
	c := fx.record("rate.syn")
	if c.Kind != change.KindRate || c.Rate.PPS != 100 || c.Rate.Burst != 200 {
		t.Errorf("rate record %+v %+v, want 100/s burst 200", c, c.Rate)
	}
	fx.ok("fleet", "rate", "udp", "--pps", "5", "--burst", "7")
	if c := fx.record("rate.udp"); c.Rate.PPS != 5 || c.Rate.Burst != 7 {
		t.Errorf("rate record %+v", c.Rate)
	}
	for _, a := range [][]string{{"fleet", "rate", "tcp", "--pps", "5"}, {"fleet", "rate", "syn"}} {
		if code, _, _ := fx.cli(a...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2", strings.Join(a, " "), code)
		}
	}
}

func TestFleetFn(t *testing.T) {
	fx := newFleetFixture(t)
	module := []byte("\x00asm\x01\x00\x00\x00 not really a module: the edges compile it")
	file := filepath.Join(fx.dir, "hello.wasm")
	if err := os.WriteFile(file, module, 0o644); err != nil {
		t.Fatal(err)
	}
	fx.ok("fleet", "fn", "deploy", "hello", file, "--route", "/hello", "--fuel", "1000", "--timeout", "250ms",
		"--memory", "2MiB", "--allow-host", "api.example.com")
	c := fx.record("fn.hello")
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	if c.Func.Digest != digest || c.Func.Size != int64(len(module)) {
		t.Errorf("function record %+v, want digest %s size %d", c.Func, digest, len(module))
	}
	var spec functions.Spec
	if err := json.Unmarshal(c.Func.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Route != "/hello" || spec.Fuel == nil || *spec.Fuel != 1000 || spec.Timeout.Duration != 250*time.Millisecond ||
		spec.Memory == nil || *spec.Memory != 2<<20 || len(spec.AllowHosts) != 1 {
		t.Errorf("spec %s", c.Func.Spec)
	}
	stored, err := fx.h.Modules.GetBytes(fx.ctx(), digest)
	if err != nil || !bytes.Equal(stored, module) {
		t.Errorf("module in the object store: %v (%d bytes)", err, len(stored))
	}

	out := fx.ok("fleet", "fn", "ls")
	if !strings.Contains(out, "hello") || !strings.Contains(out, "/hello") || !strings.Contains(out, digest[:12]) {
		t.Errorf("fn ls:\n%s", out)
	}
	var ls struct{ Functions []fleetFunction }
	if err := json.Unmarshal([]byte(fx.ok("fleet", "fn", "ls", "--json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Functions) != 1 || ls.Functions[0].Digest != digest || ls.Functions[0].Spec.Route != "/hello" {
		t.Errorf("fn ls --json = %+v", ls.Functions)
	}

	fx.ok("fleet", "fn", "rm", "hello")
	if c := fx.record("fn.hello"); c.Op != change.OpDelete {
		t.Errorf("after rm: %+v, want a tombstone", c)
	}
	if code, _, errOut := fx.cli("fleet", "fn", "rm", "hello"); code != 1 || !strings.Contains(errOut, "no function") {
		t.Errorf("second rm: exit %d, %q", code, errOut)
	}
	if out := fx.ok("fleet", "fn", "ls"); strings.Contains(out, "hello") {
		t.Errorf("fn ls after rm:\n%s", out)
	}
	// Bad flags are usage errors, like the local command's.
	before := fx.lastSeq()
	for _, a := range [][]string{
		{"fleet", "fn", "deploy", "hello", file},
		{"fleet", "fn", "deploy", "Bad Name", file, "--route", "/x"},
		{"fleet", "fn", "deploy", "hello", file, "--route", "/x", "--fuel", "0"},
		{"fleet", "fn", "deploy", "hello", file, "--route", "/x", "--memory", "lots"},
	} {
		if code, _, _ := fx.cli(a...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2", strings.Join(a, " "), code)
		}
	}
	if fx.lastSeq() != before {
		t.Error("a refused deploy published something")
	}
}

// edge runs a follower with a recorder in place of the node, reporting
// under name.
type testEdge struct {
	rec    *follow.Recorder
	cancel context.CancelFunc
	done   chan struct{}
	nc     *nats.Conn
}

func (fx *fleetFixture) edge(name string) *testEdge {
	fx.t.Helper()
	nc, err := nats.Connect(fx.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		fx.t.Fatal(err)
	}
	e := &testEdge{rec: follow.NewRecorder(), done: make(chan struct{}), nc: nc}
	f, err := follow.New(follow.Options{Conn: nc, Verifier: fx.v, State: follow.NewMemState(), Applier: e.rec,
		Name: name, Retry: 50 * time.Millisecond})
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		defer close(e.done)
		f.Run(ctx)
	}()
	fx.t.Cleanup(e.stop)
	// Wait for its first report, so that --wait knows it.
	deadline := time.Now().Add(fleetPatience)
	for {
		reports, err := hub.Edges(fx.ctx(), fx.h.JS)
		if err == nil && len(reports) > 0 {
			for _, r := range reports {
				if r.Name == name && r.CaughtUp {
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("edge %s never reported", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEdge) stop() {
	e.cancel()
	<-e.done
	e.nc.Close()
}

func TestFleetWait(t *testing.T) {
	fx := newFleetFixture(t)
	if out := fx.ok("fleet", "block", "add", "198.51.99.0/24", "--wait", "5s"); !strings.Contains(out, "nothing to wait for") {
		t.Errorf("--wait with no edge printed %q", out)
	}
	e := fx.edge("edge-a")
	out := fx.ok("fleet", "block", "add", "198.51.100.0/24", "--wait", "20s")
	if !strings.Contains(out, "applied by every connected edge") {
		t.Errorf("add --wait printed %q", out)
	}
	if _, ok := e.rec.Entries()["list.block.198-51-100-0_24"]; !ok {
		t.Error("--wait returned before the edge held the entry")
	}

	var edges struct {
		Revision uint64
		Edges    []fleetEdge
	}
	if err := json.Unmarshal([]byte(fx.ok("fleet", "edges", "--json")), &edges); err != nil {
		t.Fatal(err)
	}
	if len(edges.Edges) != 1 || edges.Edges[0].Name != "edge-a" || !edges.Edges[0].Connected || edges.Edges[0].Lag != 0 ||
		edges.Edges[0].Applied != 2 || edges.Edges[0].LastApplied.IsZero() {
		t.Errorf("edges --json = %+v", edges)
	}
	if out := fx.ok("fleet", "edges"); !regexp.MustCompile(`edge-a\s+yes\s+0\s`).MatchString(out) {
		t.Errorf("edges:\n%s", out)
	}

	// A change the edge refuses moves its cursor all the same: --wait
	// says it was refused, and by whom, rather than applied.
	fx.v.SetManagement([]netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")})
	code, _, errOut := fx.cli("fleet", "block", "add", "192.0.2.0/24", "--wait", "20s")
	if code != 1 || !strings.Contains(errOut, "refused by 1 edge(s): edge-a (management)") {
		t.Errorf("--wait for a refused change: exit %d, %q; want 1 naming edge-a's refusal", code, errOut)
	}

	// The edge goes away: its last report is still fresh, so --wait waits
	// for it and names it.
	e.stop()
	code, _, errOut = fx.cli("fleet", "block", "add", "198.51.101.0/24", "--wait", "1s")
	if code != 1 || !strings.Contains(errOut, "edge-a") {
		t.Errorf("--wait with the edge down: exit %d, %q; want 1 naming edge-a", code, errOut)
	}
	if out := fx.ok("fleet", "edges"); !regexp.MustCompile(`edge-a\s+yes\s+1\s.*management=1`).MatchString(out) {
		t.Errorf("edges with edge-a one change behind:\n%s", out)
	}
}

// TestFleetWaitTrustsOnlyWhatItRead: --wait never claims every edge
// applied a change from part of the edges' reports (a wait that ends while
// the reports of a large fleet are still being read exits 1), and an
// edge's freshness is the hub's time of its report, not the edge's clock
// (an edge two minutes behind is still waited for and named).
func TestFleetWaitTrustsOnlyWhatItRead(t *testing.T) {
	fx := newFleetFixture(t)
	edges, err := fx.h.JS.KeyValue(fx.ctx(), hub.EdgesBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fx.h.JS.Stream(fx.ctx(), hub.Stream)
	if err != nil {
		t.Fatal(err)
	}
	epoch := strconv.FormatInt(st.CachedInfo().Created.UnixNano(), 10)

	// An edge whose clock is two minutes behind, at revision 0.
	if err := hub.Report(fx.ctx(), edges, hub.EdgeReport{Name: "behind", Epoch: epoch, Reported: time.Now().Add(-2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// Long enough to read one report on a busy machine: the edge never
	// applies, so the wait always runs out.
	code, _, errOut := fx.cli("fleet", "block", "add", "198.51.100.0/24", "--wait", "3s")
	if code != 1 || !strings.Contains(errOut, "behind") {
		t.Errorf("--wait with an edge whose clock is behind: exit %d, %q; want 1 naming it", code, errOut)
	}

	// 1,000 edges that applied everything, and the one that did not, read
	// last: a wait too short to read them all must not pass. Waits of
	// several lengths, so that some end while the reports are being read
	// (the shortest may end before the reading starts: an error too).
	for i := range 1000 {
		r := hub.EdgeReport{Name: fmt.Sprintf("edge-%03d", i), Epoch: epoch, Seq: 1 << 40, CaughtUp: true}
		if err := hub.Report(fx.ctx(), edges, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := hub.Report(fx.ctx(), edges, hub.EdgeReport{Name: "zz-stuck", Epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	for i, wait := range []string{"3ms", "10ms", "20ms", "40ms", "80ms", "160ms"} {
		code, out, errOut := fx.cli("fleet", "block", "add", fmt.Sprintf("198.51.%d.0/24", 110+i), "--wait", wait)
		if code != 1 || strings.Contains(out, "applied by every") {
			t.Fatalf("--wait %s over 1,002 edges, one stuck: exit %d, %q %q; want 1", wait, code, out, errOut)
		}
	}
}

func TestFleetBadInputPublishesNothing(t *testing.T) {
	fx := newFleetFixture(t)
	garbage := filepath.Join(fx.dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	notWasm, module := filepath.Join(fx.dir, "hello.txt"), filepath.Join(fx.dir, "hello.wasm")
	if err := os.WriteFile(notWasm, []byte("hello, not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(fx.dir, "huge.wasm") // sparse: larger than any node takes
	if err := os.WriteFile(huge, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, int64(config.MaxModuleSizeCeiling)+1); err != nil {
		t.Fatal(err)
	}
	deploy := func(file string, flags ...string) []string {
		return append([]string{"fleet", "fn", "deploy", "hello", file, "--route", "/hello"}, flags...)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"bad target", nil, []string{"fleet", "block", "add", "198.51.100.0/24", "300.1.2.3"}, 1, "300.1.2.3"},
		{"host bits", nil, []string{"fleet", "block", "rm", "198.51.100.1/24"}, 1, "host bits"},
		{"bad ttl", nil, []string{"fleet", "block", "add", "--ttl", "soon", "198.51.100.0/24"}, 2, "soon"},
		{"negative ttl", nil, []string{"fleet", "block", "add", "--ttl", "-1h", "198.51.100.0/24"}, 1, "negative"},
		{"bad key", map[string]string{"AEGIS_FLEET_KEY": garbage}, []string{"fleet", "block", "add", "198.51.100.0/24"}, 1, "garbage.key"},
		{"missing key", map[string]string{"AEGIS_FLEET_KEY": filepath.Join(fx.dir, "none.key")}, []string{"fleet", "rate", "syn", "--pps", "1"}, 1, "none.key"},
		{"no key", map[string]string{"AEGIS_FLEET_KEY": ""}, []string{"fleet", "block", "add", "198.51.100.0/24"}, 2, "--key"},
		{"unreachable", map[string]string{"AEGIS_FLEET_SERVER": "nats://127.0.0.1:1"}, []string{"fleet", "block", "add", "198.51.100.0/24"}, 1, "127.0.0.1:1"},
		{"unreachable flag", nil, []string{"fleet", "--server", "nats://127.0.0.1:1", "block", "ls"}, 1, "127.0.0.1:1"},
		{"no subcommand", nil, []string{"fleet"}, 2, ""},
		// The group's own setup keeps the root's: status finds the socket.
		{"status socket", nil, []string{"--socket", filepath.Join(fx.dir, "none.sock"), "fleet", "status"}, 1, "none.sock"},
		{"keygen exists", nil, []string{"fleet", "keygen", filepath.Join(fx.dir, "op")}, 1, "exists"},
		// Rates every edge would refuse: published, they would replace a
		// good record with one no edge applies.
		{"rate burst 0", nil, []string{"fleet", "rate", "udp", "--pps", "100", "--burst", "0"}, 2, "burst"},
		{"rate over the maximum", nil, []string{"fleet", "rate", "udp", "--pps", "200000000"}, 2, "at most"},
		{"rate burst over the maximum", nil, []string{"fleet", "rate", "syn", "--pps", "10", "--burst", "100000001"}, 2, "at most"},
		// Functions every edge would refuse, checked before the module is
		// stored or anything published.
		{"fn not wasm", nil, deploy(notWasm), 1, "not a WebAssembly module"},
		{"fn too large", nil, deploy(huge), 1, "over the"},
		{"fn host with an escape", nil, deploy(module, "--allow-host", "api.example.com\x1b[2J"), 2, "allowed host"},
		{"fn memory too large", nil, deploy(module, "--memory", "100TiB"), 2, "memory"},
		{"fn timeout too long", nil, deploy(module, "--timeout", "9999h"), 2, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := fx.env
			fx.env = map[string]string{}
			for k, v := range saved {
				fx.env[k] = v
			}
			for k, v := range tc.env {
				fx.env[k] = v
			}
			defer func() { fx.env = saved }()
			code, _, errOut := fx.cli(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	if got := fx.lastSeq(); got != 0 {
		t.Errorf("the bucket is at revision %d after only refused commands, want 0", got)
	}
	if objs, err := fx.h.Modules.List(fx.ctx()); err == nil && len(objs) > 0 {
		t.Errorf("the object store holds %d modules after only refused deploys", len(objs))
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in
// different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startHubCommand runs `aegis hub --config` on yaml and returns the
// client URL it logs and a stop that ends it and returns its log (called
// at the end of the test if not before).
func startHubCommand(t *testing.T, yaml string) (string, func() string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	root := newRoot(e)
	root.SetArgs([]string{"hub", "--config", cfg})
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var once sync.Once
	stop := func() string {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("aegis hub returned %v", err)
				}
			case <-time.After(fleetPatience):
				t.Error("aegis hub did not stop")
			}
		})
		return stderr.String()
	}
	t.Cleanup(func() { stop() })

	urlRe := regexp.MustCompile(`"url":"(nats://127\.0\.0\.1:\d+)"`)
	for deadline := time.Now().Add(fleetPatience); ; {
		if m := urlRe.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], stop
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("aegis hub exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("aegis hub did not log its URL:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHubCommand(t *testing.T) {
	dir := t.TempDir()
	url, stop := startHubCommand(t, fmt.Sprintf("state_dir: %s\nhub:\n  listen: 127.0.0.1:0\n  tombstone_retention: 1h\n", dir))
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(dir, "hub", "jetstream")); err != nil {
		t.Errorf("no JetStream store under state_dir/hub: %v", err)
	}

	// An operator publishes to it.
	fenv := map[string]string{"AEGIS_FLEET_SERVER": url, "AEGIS_FLEET_KEY": filepath.Join(dir, "op.key")}
	cliEnv := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut, func(k string) string { return fenv[k] })
		return code, out.String() + errOut.String()
	}
	if code, out := cliEnv("fleet", "keygen", filepath.Join(dir, "op")); code != 0 {
		t.Fatal(out)
	}
	if code, out := cliEnv("fleet", "block", "add", "198.51.100.0/24"); code != 0 {
		t.Fatal(out)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, hub.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "list.block.198-51-100-0_24"); err != nil {
		t.Errorf("the published record is not on the hub: %v", err)
	}

	if log := stop(); !strings.Contains(log, "aegis hub stopped") {
		t.Errorf("no stop logged:\n%s", log)
	}
}

// TestHubPromotesAutoBlocks: with hub.controller_key, `aegis hub` runs the
// controller, and a source two edges report (hub.auto_block.min_edges 2)
// becomes a fleet block signed by the controller's key, which an edge's
// Verifier accepts as a controller promotion. One edge's report alone
// promotes nothing.
func TestHubPromotesAutoBlocks(t *testing.T) {
	dir := t.TempDir()
	pub, err := keyfile.GenerateFiles(filepath.Join(dir, "controller"))
	if err != nil {
		t.Fatal(err)
	}
	url, _ := startHubCommand(t, fmt.Sprintf("state_dir: %s\nhub:\n  listen: 127.0.0.1:0\n  controller_key: %s\n"+
		"  auto_block: {min_edges: 2, window: 1m, ttl: 10m}\n", dir, filepath.Join(dir, "controller.key")))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	send := func(edge, prefix string) {
		r, err := report.New(report.Options{Dir: filepath.Join(dir, edge), Name: edge, Conn: nc})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; r.Close() })
		if err := r.Report(netip.MustParsePrefix(prefix), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), hub.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	send("edge-1", "203.0.113.5/32")
	send("edge-1", "198.51.100.77/32")
	send("edge-2", "198.51.100.77/32")
	var e jetstream.KeyValueEntry
	testutil.WaitFor(t, "the controller's promotion on the hub", func() bool {
		e, err = kv.Get(context.Background(), "list.block.198-51-100-77_32")
		return err == nil
	})
	env, err := change.Decode(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	env.StoredKey = e.Key()
	v, err := change.NewVerifier(change.Policy{Controller: pub})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Check(env, time.Now())
	if err != nil || !c.ByController || c.ExpiresAt == 0 {
		t.Fatalf("the promotion does not verify as the controller's: %+v, %v", c, err)
	}
	if _, err := kv.Get(context.Background(), "list.block.203-0-113-5_32"); err == nil {
		t.Error("a source one edge reported was promoted")
	}
}

// TestHubSampleConfig keeps deploy/hub.yaml honest: it loads, and the hub
// takes its settings.
func TestHubSampleConfig(t *testing.T) {
	cfg, err := config.Load("../../deploy/hub.yaml")
	if err != nil {
		t.Fatalf("deploy/hub.yaml: %v", err)
	}
	opts, err := hubOptions(cfg, nil)
	if err != nil {
		t.Fatalf("deploy/hub.yaml: %v", err)
	}
	if opts.StoreDir != filepath.Join(cfg.StateDir, "hub") || opts.Listen == "" || opts.Replicas != 1 ||
		opts.ReportWindow != cfg.Hub.AutoBlock.Window.Duration {
		t.Errorf("hub options from the sample: %+v", opts)
	}
}

// TestHubUnit binds deploy/aegis-hub.service to the hub: no capability,
// an unprivileged user, and the directories the sample config names.
func TestHubUnit(t *testing.T) {
	settings := testutil.UnitSettings(t, "../../deploy/aegis-hub.service")
	one := func(key string) string {
		if len(settings[key]) != 1 {
			t.Errorf("%s set %d times, want once", key, len(settings[key]))
			return ""
		}
		return settings[key][0]
	}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if v := one(key); v != "" {
			t.Errorf("%s=%s: the hub needs no capability", key, v)
		}
	}
	for key, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict"} {
		if v := one(key); v != want {
			t.Errorf("%s=%s, want %s", key, v, want)
		}
	}
	cfg, err := config.Load("../../deploy/hub.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if sd := "/var/lib/" + one("StateDirectory"); cfg.StateDir != sd {
		t.Errorf("deploy/hub.yaml state_dir %s, the unit's state directory is %s", cfg.StateDir, sd)
	}
	if want := "/etc/" + one("ConfigurationDirectory") + "/hub.yaml"; !strings.HasSuffix(one("ExecStart"), " hub --config "+want) {
		t.Errorf("ExecStart=%s, want aegis hub --config %s", one("ExecStart"), want)
	}
}

// With hub users, an operator needs a publisher's credentials.
func TestFleetCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), fleetPatience)
	defer cancel()
	h, err := hub.Open(ctx, hub.Options{StoreDir: filepath.Join(dir, "hub"), Listen: "127.0.0.1:-1", Users: []hub.User{
		{Name: "ops", Password: "ops-secret", Role: hub.RolePublisher},
		{Name: "edge-a", Password: "edge-secret", Role: hub.RoleEdge},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := keyfile.GenerateFiles(filepath.Join(dir, "op")); err != nil {
		t.Fatal(err)
	}
	creds := func(name, line string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fx := &fleetFixture{t: t, h: h}
	for _, tc := range []struct {
		name, creds, want string
		code              int
	}{
		{"none", "", "Authorization Violation", 1},
		{"wrong password", creds("bad", "ops:nope"), "Authorization Violation", 1},
		{"edge", creds("edge", "edge-a:edge-secret"), "refused the write", 1},
		{"publisher", creds("ops", "ops:ops-secret"), "", 0},
	} {
		fx.env = map[string]string{"AEGIS_FLEET_SERVER": h.Server.ClientURL(), "AEGIS_FLEET_KEY": filepath.Join(dir, "op.key"),
			"AEGIS_FLEET_CREDENTIALS": tc.creds}
		start := time.Now()
		code, _, errOut := fx.cli("fleet", "block", "add", "198.51.100.0/24")
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d (%s), want %d mentioning %q", tc.name, code, errOut, tc.code, tc.want)
		}
		t.Logf("%s: exit %d after %s: %s", tc.name, code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(errOut))
		if tc.code != 0 {
			if rev, _ := hub.LastRevision(ctx, h.JS); rev != 0 {
				t.Errorf("%s: published", tc.name)
			}
		}
	}
}

// A hub configured with hub.tls and a client CA takes operators that
// present --tls-ca, --tls-cert and --tls-key, and no others.
func TestFleetMutualTLS(t *testing.T) {
	dir := t.TempDir()
	testutil.NewPKI(t).WriteFiles(t, dir)
	cfg := config.Default()
	cfg.StateDir = dir
	cfg.Hub.Listen = "127.0.0.1:0"
	cfg.Hub.TLS = config.TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}
	opts, err := hubOptions(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fleetPatience)
	defer cancel()
	h, err := hub.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := keyfile.GenerateFiles(filepath.Join(dir, "op")); err != nil {
		t.Fatal(err)
	}
	fx := &fleetFixture{t: t, h: h, env: map[string]string{"AEGIS_FLEET_SERVER": h.Server.ClientURL(), "AEGIS_FLEET_KEY": filepath.Join(dir, "op.key")}}
	if !strings.HasPrefix(h.Server.ClientURL(), "tls://") {
		t.Fatalf("hub URL %s, want tls://", h.Server.ClientURL())
	}
	tlsFlags := []string{"fleet", "--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "client.pem"), "--tls-key", filepath.Join(dir, "client.key")}
	if code, _, errOut := fx.cli(append(tlsFlags[:3:3], "block", "add", "198.51.100.0/24")...); code != 1 {
		t.Errorf("without a client certificate: exit %d (%s), want 1", code, errOut)
	} else {
		t.Logf("without a client certificate: %s", errOut)
	}
	fx.ok(append(tlsFlags, "block", "add", "198.51.100.0/24")...)
	if _, err := h.KV.Get(ctx, "list.block.198-51-100-0_24"); err != nil {
		t.Errorf("not published over mutual TLS: %v", err)
	}
}

// The hub removes tombstones older than hub.tombstone_retention and keeps
// newer ones and live entries.
func TestHubCompactsTombstones(t *testing.T) {
	fx := newFleetFixture(t)
	key, err := keyfile.ReadPrivateKey(fx.env["AEGIS_FLEET_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hub.NewPublisher(fx.ctx(), fx.h.Conn)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(target string, op change.Op, age time.Duration) {
		t.Helper()
		c := change.Change{Kind: change.KindList, Op: op, List: change.Blocklist, Prefix: netip.MustParsePrefix(target),
			IssuedAt: time.Now().Add(-age).UnixNano()}
		env, err := change.Sign(c, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(fx.ctx(), env); err != nil {
			t.Fatal(err)
		}
	}
	publish("198.51.100.0/24", change.OpPut, 3*time.Hour)
	publish("198.51.100.0/24", change.OpDelete, 2*time.Hour) // old tombstone
	publish("198.51.101.0/24", change.OpPut, 3*time.Hour)
	publish("198.51.101.0/24", change.OpDelete, time.Minute) // recent tombstone
	publish("198.51.102.0/24", change.OpPut, 3*time.Hour)    // live

	// An operator's removal of an automatic block is kept a TTL at least:
	// with a 24 h TTL the 2-hour-old tombstone stays.
	var hc config.Hub
	hc.TombstoneRetention.Duration, hc.AutoBlock.TTL.Duration = time.Hour, 24*time.Hour
	compactTombstones(fx.ctx(), fx.h, tombstoneRetention(hc), slog.New(slog.DiscardHandler))
	if c := fx.record("list.block.198-51-100-0_24"); c.Op != change.OpDelete {
		t.Errorf("a tombstone younger than the automatic blocks' TTL was removed: %+v", c)
	}
	hc.AutoBlock.TTL.Duration = time.Hour
	compactTombstones(fx.ctx(), fx.h, tombstoneRetention(hc), slog.New(slog.DiscardHandler))
	if _, err := fx.h.KV.Get(fx.ctx(), "list.block.198-51-100-0_24"); err == nil {
		t.Error("a tombstone older than the retention is still on the hub")
	}
	if c := fx.record("list.block.198-51-101-0_24"); c.Op != change.OpDelete {
		t.Errorf("recent tombstone: %+v", c)
	}
	if c := fx.record("list.block.198-51-102-0_24"); c.Op != change.OpPut {
		t.Errorf("live entry: %+v", c)
	}
}

// TestRefusalsPrintPlainReasons: an edge's report is its word; `fleet
// edges` prints a reason that is not a plain word (an escape sequence for
// the operator's terminal) as other.
func TestRefusalsPrintPlainReasons(t *testing.T) {
	got := refusals(map[string]uint64{"management": 2, "\x1b]0;owned\x07": 3, "too_broad": 1, "x y": 1})
	if want := "management=2,other=4,too_broad=1"; got != want {
		t.Fatalf("refusals = %q, want %q", got, want)
	}
}

// TestFleetFnLsPrintsNoRecordText: a function record signed by a trusted
// key whose route holds a terminal escape and a line that fakes a row is
// listed with its route as invalid: nothing of it reaches the terminal.
func TestFleetFnLsPrintsNoRecordText(t *testing.T) {
	fx := newFleetFixture(t)
	route := "/e\x1b]0;pwned\x07\nFAKE   /fake   deadbeef"
	spec, _ := json.Marshal(functions.Spec{Route: route})
	sum := sha256.Sum256([]byte("m"))
	fx.publishSigned(change.Change{Kind: change.KindFunction, Op: change.OpPut,
		Func: &change.Function{Name: "evil", Digest: hex.EncodeToString(sum[:]), Size: 1, Spec: spec}})
	out := fx.ok("fleet", "fn", "ls")
	if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "FAKE") || !strings.Contains(out, "invalid") {
		t.Errorf("fn ls printed the record's route:\n%q", out)
	}
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Errorf("fn ls printed %d lines for one function, want a header and a row:\n%s", lines, out)
	}
}

// TestFleetAddSaysWhatWentOut: the hub holds a newer change for the second
// of three targets; `fleet block add` stops there with exit 1 and says
// which of its changes it had published.
func TestFleetAddSaysWhatWentOut(t *testing.T) {
	fx := newFleetFixture(t)
	fx.publishSigned(change.Change{Kind: change.KindList, Op: change.OpDelete, List: change.Blocklist,
		Prefix: netip.MustParsePrefix("198.51.101.0/24"), IssuedAt: time.Now().Add(time.Hour).UnixNano()})
	code, _, errOut := fx.cli("fleet", "block", "add", "198.51.100.0/24", "198.51.101.0/24", "198.51.102.0/24")
	if code != 1 || !strings.Contains(errOut, "1 published before it, list.block.198-51-100-0_24") {
		t.Errorf("exit %d, %q; want 1 saying the first target was published", code, errOut)
	}
	if _, err := fx.h.KV.Get(fx.ctx(), "list.block.198-51-102-0_24"); err == nil {
		t.Error("the target after the refused one was published")
	}
}

// publishSigned signs c with the operator's key and publishes it past the
// command's checks, as a script or another tool holding the key could.
func (fx *fleetFixture) publishSigned(c change.Change) {
	fx.t.Helper()
	priv, err := keyfile.ReadPrivateKey(fx.env["AEGIS_FLEET_KEY"])
	if err != nil {
		fx.t.Fatal(err)
	}
	env, err := change.Sign(c, priv)
	if err != nil {
		fx.t.Fatal(err)
	}
	pub, err := hub.NewPublisher(fx.ctx(), fx.h.Conn)
	if err != nil {
		fx.t.Fatal(err)
	}
	if _, err := pub.Publish(fx.ctx(), env); err != nil {
		fx.t.Fatal(err)
	}
}
