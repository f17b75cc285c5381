//go:build linux

package lab

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/node"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p100", ms(1, 2, 3), 1, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestSummaryCheck(t *testing.T) {
	good := Summary{Shield: map[string]uint64{"blocked_exact": 5, "rate_syn": 10, "passed": 100}, OK: 3}
	tests := []struct {
		name string
		edit func(*Summary)
		want string // "" = passes
	}{
		{"good", func(*Summary) {}, ""},
		{"only auto blocks", func(s *Summary) { s.Shield = map[string]uint64{"blocked_exact": 1, "auto_blocked": 9} }, ""},
		{"blocklist not enforced", func(s *Summary) { delete(s.Shield, "blocked_exact") }, "blocklisted source was never dropped"},
		{"flood passed", func(s *Summary) { delete(s.Shield, "rate_syn") }, "never rate-limited"},
		{"function silent", func(s *Summary) { s.OK, s.Failed = 0, 40 }, "never answered 200"},
		{"nothing at all", func(s *Summary) { *s = Summary{} }, "never dropped"},
	}
	for _, tc := range tests {
		s := good
		s.Shield = map[string]uint64{}
		for k, v := range good.Shield {
			s.Shield[k] = v
		}
		tc.edit(&s)
		err := s.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Check() = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Check() = %v, want %q", tc.name, err, tc.want)
		}
	}
	if d := good.Dropped(); d != 15 {
		t.Errorf("Dropped() = %d, want 15 (passed packets are not drops)", d)
	}
}

func testSamples() (prev, cur sample) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev = sample{at: t0, counters: map[string]node.Counter{"passed": {Packets: 100}, "rate_syn": {Packets: 0}},
		sent: map[string]uint64{StreamSYN: 1000, StreamUDP: 0, StreamBlocked: 0}}
	cur = sample{at: t0.Add(2 * time.Second), autoBlocks: 1,
		counters: map[string]node.Counter{"passed": {Packets: 300}, "rate_syn": {Packets: 800}, "blocked_exact": {Packets: 50}},
		sent:     map[string]uint64{StreamSYN: 3000, StreamUDP: 400, StreamBlocked: 50},
		fn:       interval{OK: 90, Failed: 2, P99: 1500 * time.Microsecond}}
	return prev, cur
}

func TestViewPlainLine(t *testing.T) {
	prev, cur := testSamples()
	var b bytes.Buffer
	v := &view{w: &b, id: "ab12", total: 10 * time.Second, start: prev.at}
	v.draw(prev, cur)
	line := b.String()
	for _, want := range []string{
		"2s ",
		"sent 1225 pkt/s", // (2000+400+50)/2
		"rate_syn 400/s",
		"blocked_exact 25/s",
		"auto-blocked 1",
		"function 45 req/s p99 1.50ms errors 2",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("plain line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "rate_icmp") || strings.Contains(line, "\x1b") || strings.Count(line, "\n") != 1 {
		t.Errorf("plain line should be one line of non-zero drops without escapes:\n%q", line)
	}
}

func TestViewLiveTable(t *testing.T) {
	prev, cur := testSamples()
	var b bytes.Buffer
	v := &view{w: &b, live: true, id: "ab12", total: 10 * time.Second, start: prev.at}
	v.draw(prev, cur)
	out := b.String()
	if !strings.HasPrefix(out, clearScreen) {
		t.Errorf("live view does not start by clearing the screen: %q", out[:min(len(out), 20)])
	}
	for _, want := range []string{"aegis lab ab12", "2s of 10s", "SHIELD", "rate_icmp", "auto-blocked sources: 1", FunctionRoute} {
		if !strings.Contains(out, want) {
			t.Errorf("live view lacks %q:\n%s", want, out)
		}
	}
	// Rows hold the total and the rate of the interval.
	if !regexpLine(out, `rate_syn +800 +400`) || !regexpLine(out, `syn flood +3000 +1000`) {
		t.Errorf("live view rows:\n%s", out)
	}
}

func TestSummaryWrite(t *testing.T) {
	s := Summary{ID: "ab12", Duration: 5 * time.Second,
		Sent:   map[string]uint64{StreamSYN: 600, StreamUDP: 300, StreamBlocked: 100},
		Shield: map[string]uint64{"passed": 10, "blocked_exact": 100, "auto_blocked": 400},
		OK:     99, Failed: 1, P50: time.Millisecond, P99: 3 * time.Millisecond}
	var b bytes.Buffer
	s.Write(&b)
	for _, want := range []string{"1000 packets", "shield dropped:  500 packets (50.0% of the attack)", "auto_blocked:", "100 requests, 99 answered 200 (99.00%)", "p99 3.00ms"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "rate_icmp") {
		t.Errorf("summary lists a reason with no packets:\n%s", b.String())
	}
}

func TestNames(t *testing.T) {
	n := NamesFor("0a1b2c3d")
	for _, s := range []string{n.Edge, n.Attacker, n.Client} {
		if !strings.HasPrefix(s, "aegis-lab-0a1b2c3d-") {
			t.Errorf("namespace %q", s)
		}
	}
	if n.PinPath != "/sys/fs/bpf/aegis-lab-0a1b2c3d" || !strings.HasSuffix(n.Dir, "/aegis-lab-0a1b2c3d") {
		t.Errorf("names %+v", n)
	}
	if err := nodeConfig(n.single(), clientLinks[0], nil).Validate(); err != nil {
		t.Errorf("the node's config: %v", err)
	}
	for i, e := range n.Fleet {
		if !strings.HasPrefix(e.NS, "aegis-lab-0a1b2c3d-edge-") || !strings.HasPrefix(e.Dir, n.Dir+"/") || !strings.HasPrefix(e.PinPath, n.PinPath+"/") {
			t.Errorf("fleet edge names %+v", e)
		}
		links := &edgeLinks{names: e, addrs: clientLinks[i]}
		cfg := nodeConfig(e, clientLinks[i], fleetConfig(n, links))
		if err := cfg.Validate(); err != nil {
			t.Errorf("the config of %s: %v", e.Name, err)
		}
	}
	for id, want := range map[string]bool{"0a1b2c3d": true, newID(): true, "": false, "xyz": false, "../x": false, "0a1b2c3d0a1b2c3d00": false} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v", id, !want)
		}
	}
	if err := Clean("../../etc"); err == nil {
		t.Error("Clean accepted a path as an ID")
	}
}

// regexpLine reports whether some line of s matches pattern.
func regexpLine(s, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// TestLatencySampleStaysUniform records more latencies than the client
// keeps: the sample is capped and its median still that of all of them.
func TestLatencySampleStaysUniform(t *testing.T) {
	c := &client{maxSamples: 1000}
	const n = 100_000
	for i := range n {
		c.record(true, time.Duration(i+1))
	}
	c.record(false, 0)
	ok, failed, lat := c.totals()
	if ok != n || failed != 1 || len(lat) != 1000 {
		t.Fatalf("totals: ok %d failed %d, %d samples", ok, failed, len(lat))
	}
	// The sample median's standard error is about 1.6% of n here.
	if med := percentile(lat, 0.5); med < n*4/10 || med > n*6/10 {
		t.Errorf("sample median %d, want about %d", med, n/2)
	}
	if iv := c.take(); iv.OK != n || iv.Failed != 1 || iv.P99 < n*9/10 {
		t.Errorf("take() = %+v", iv)
	}
	if iv := c.take(); iv.OK != 0 || iv.P99 != 0 {
		t.Errorf("a second take() = %+v, want an empty interval", iv)
	}
}

// TestFleetSummary: a fleet run passes only if every edge listed the fleet
// block and dropped the blocked source; the summary has a line per edge.
func TestFleetSummary(t *testing.T) {
	edge := func(name string, applied bool, blocked uint64) EdgeSummary {
		return EdgeSummary{Name: name, Applied: applied, Propagation: 12 * time.Millisecond,
			Shield: map[string]uint64{"blocked_exact": blocked, "auto_blocked": 7, "passed": 100}}
	}
	good := func() Summary {
		return Summary{ID: "0a1b2c3d", Fleet: true, OK: 3, Shield: map[string]uint64{"blocked_exact": 10},
			Edges: []EdgeSummary{edge("edge-1", true, 5), edge("edge-2", true, 5)}}
	}
	tests := []struct {
		name string
		edit func(*Summary)
		want string
	}{
		{"good", func(*Summary) {}, ""},
		{"not applied", func(s *Summary) { s.Edges[1].Applied = false }, "edge-2 never listed the fleet block"},
		{"not dropped", func(s *Summary) { s.Edges[0].Shield["blocked_exact"] = 0 }, "edge-1 never dropped the blocklisted source"},
		{"one edge", func(s *Summary) { s.Edges = s.Edges[:1] }, "1 edges ran"},
		{"function silent", func(s *Summary) { s.OK = 0 }, "never answered 200"},
	}
	for _, tc := range tests {
		s := good()
		tc.edit(&s)
		err := s.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Check() = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Check() = %v, want %q", tc.name, err, tc.want)
		}
	}
	var b strings.Builder
	s := good()
	s.Edges[1].Applied = false
	s.Write(&b)
	if !regexpLine(b.String(), `^  edge-1: fleet block listed after 12\.00ms; dropped 12 packets, blocklisted 5, auto-blocked sources 0$`) ||
		!regexpLine(b.String(), `^  edge-2: fleet block NOT listed; dropped 12 packets, blocklisted 5`) {
		t.Errorf("summary:\n%s", b.String())
	}
}
