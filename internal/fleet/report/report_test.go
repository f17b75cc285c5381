package report

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

const patience = 60 * time.Second

func open(t *testing.T, o Options) *Reporter {
	t.Helper()
	if o.Name == "" {
		o.Name = "edge1"
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func report(t *testing.T, r *Reporter, prefix string, until time.Time) {
	t.Helper()
	if err := r.Report(netip.MustParsePrefix(prefix), until); err != nil {
		t.Fatal(err)
	}
}

// TestQueueSurvivesRestartAndTornLine: reports stay queued across a
// restart, a duplicate merges, and a torn last line (a crash mid-write)
// is skipped.
func TestQueueSurvivesRestartAndTornLine(t *testing.T) {
	dir := t.TempDir()
	until := time.Now().Add(time.Hour)
	r := open(t, Options{Dir: dir})
	report(t, r, "198.51.100.7/32", until)
	report(t, r, "::ffff:203.0.113.9/128", until) // stored as IPv4
	report(t, r, "198.51.100.7/32", until.Add(time.Minute))
	if s := r.Stats(); s.Queued != 2 || s.Merged != 1 {
		t.Fatalf("stats %+v, want 2 queued, 1 merged", s)
	}
	r.Close()
	if err := r.Report(netip.MustParsePrefix("192.0.2.1/32"), until); err == nil {
		t.Fatal("a closed reporter queued a report")
	}
	f, err := os.OpenFile(filepath.Join(dir, queueFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":3,"prefix":"192.0.2.`)
	f.Close()

	r2 := open(t, Options{Dir: dir})
	if s := r2.Stats(); s.Queued != 2 || s.Skipped != 1 {
		t.Fatalf("after the restart: %+v, want 2 queued, 1 skipped", s)
	}
	got, _ := r2.pending()
	if got[0].prefix != netip.MustParsePrefix("198.51.100.7/32") || !got[0].until.Equal(until.Add(time.Minute)) ||
		got[1].prefix != netip.MustParsePrefix("203.0.113.9/32") {
		t.Fatalf("queued after the restart: %+v", got)
	}
	// The torn line is gone from the file, and new reports append cleanly.
	report(t, r2, "192.0.2.1/32", time.Time{})
	r2.Close()
	if r3 := open(t, Options{Dir: dir}); r3.Stats().Queued != 3 || r3.Stats().Skipped != 0 {
		t.Fatalf("after a second restart: %+v", r3.Stats())
	}
}

func TestQueueIsBounded(t *testing.T) {
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, MaxQueue: 3})
	for i := range 5 {
		report(t, r, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()+"/32", time.Time{})
	}
	if s := r.Stats(); s.Queued != 3 || s.Dropped != 2 {
		t.Fatalf("stats %+v, want 3 queued, 2 dropped", s)
	}
	r.Close()
	r2 := open(t, Options{Dir: dir, MaxQueue: 3})
	got, _ := r2.pending()
	if len(got) != 3 || got[0].prefix.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("after a restart the queue holds %+v, want the newest three", got)
	}
}

func TestParse(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	good := Report{Prefix: netip.MustParsePrefix("198.51.100.0/24"), At: at, Until: at.Add(time.Hour), Edge: "edge-1"}
	if r, err := Parse(good.Encode()); err != nil || r != good {
		t.Fatalf("Parse(Encode) = %+v, %v", r, err)
	}
	for _, bad := range []string{
		`{"prefix":"198.51.100.1/24","at":"2026-12-06T04:00:00Z","edge":"e"}`,                                // not canonical
		`{"prefix":"198.51.100.0/24","at":"2026-12-06T04:00:00Z","edge":"e/x"}`,                              // bad name
		`{"prefix":"198.51.100.0/24","edge":"e"}`,                                                            // no time
		`{"prefix":"198.51.100.0/24","at":"2026-12-06T04:00:00Z","edge":"e","x":1}`,                          // unknown field
		`{"prefix":"198.51.100.0/24","at":"2026-12-06T04:00:00Z","edge":"e"} {}`,                             // trailing data
		`{"prefix":"198.51.100.0/24","at":"2026-12-06T04:00:00Z","until":"2026-12-06T03:00:00Z","edge":"e"}`, // expires before
		`{"prefix":"::ffff:198.51.100.0/120","at":"2026-12-06T04:00:00Z","edge":"e"}`,                        // mapped
		`{"prefix":"198.51.100.0/24","at":"2026-12-06T04:00:00Z","edge":"` + strings.Repeat("e", 2000) + `"}`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse accepted %.80s", bad)
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReportsWaitForTheHub: with the hub down, reports stay queued; a new
// Reporter on the same directory (a restarted node) sends them once the
// hub is up, and removes each the hub acknowledged.
func TestReportsWaitForTheHub(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	addr := freeAddr(t)
	dir := t.TempDir()
	dial := hub.Dial{Servers: []string{"nats://" + addr}, Background: true}
	nc, err := dial.Connect()
	if err != nil {
		t.Fatal(err)
	}
	r := open(t, Options{Dir: dir, Conn: nc})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	until := time.Now().Add(time.Hour)
	report(t, r, "198.51.100.7/32", until)
	report(t, r, "2001:db8::/64", until)
	time.Sleep(500 * time.Millisecond)
	if s := r.Stats(); s.Queued != 2 || s.Sent != 0 {
		t.Fatalf("with the hub down: %+v", s)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.Close()
	nc.Close()

	h, err := hub.Open(ctx, hub.Options{StoreDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nc, err = dial.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r2 := open(t, Options{Dir: dir, Conn: nc})
	go r2.Run(ctx)
	for r2.Stats().Queued != 0 {
		if ctx.Err() != nil {
			t.Fatalf("the queue was not sent: %+v", r2.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := h.JS.OrderedConsumer(ctx, hub.ReportStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Report
	for range 2 {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Parse(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject() != hub.ReportSubject("edge1") || rep.Edge != "edge1" || !rep.Until.Equal(until) {
			t.Fatalf("report on %s: %+v", m.Subject(), rep)
		}
		got = append(got, rep)
	}
	if got[0].Prefix.String() != "198.51.100.7/32" || got[1].Prefix.String() != "2001:db8::/64" {
		t.Fatalf("reports %+v", got)
	}
	r2.Close()
	if r3 := open(t, Options{Dir: dir}); r3.Stats().Queued != 0 {
		t.Fatalf("acknowledged reports came back after a restart: %+v", r3.Stats())
	}
}

// TestCloseStopsRun: a closed reporter's Run returns, its queue on disk.
func TestCloseStopsRun(t *testing.T) {
	nc, err := hub.Dial{Servers: []string{"nats://" + freeAddr(t)}, Background: true}.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Conn: nc})
	report(t, r, "198.51.100.7/32", time.Time{})
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	r.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Run went on after Close")
	}
	if r2 := open(t, Options{Dir: dir}); r2.Stats().Queued != 1 {
		t.Fatalf("queue after Close: %+v", r2.Stats())
	}
}
