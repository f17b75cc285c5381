//go:build linux

package lab

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
)

// sample is one look at the lab, taken once a second.
type sample struct {
	at         time.Time
	counters   map[string]node.Counter // the shield's, by reason
	autoBlocks int
	sent       map[string]uint64 // attack packets by stream
	fn         interval          // the client's since the previous sample
}

// streamOrder is the order the view lists attack streams in.
var streamOrder = []string{StreamSYN, StreamUDP, StreamBlocked}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// view draws the live view.
type view struct {
	w     io.Writer
	live  bool // redraw in place; otherwise one compact line per second
	id    string
	total time.Duration
	start time.Time
}

// draw shows the interval between prev and cur.
func (v *view) draw(prev, cur sample) {
	secs := cur.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	rate := func(c, p uint64) float64 { return float64(c-min(p, c)) / secs }
	elapsed := cur.at.Sub(v.start).Round(time.Second)
	fnRPS := float64(cur.fn.OK) / secs

	if !v.live {
		var drops []string
		for _, r := range shield.Reasons() {
			if c := cur.counters[r.String()].Packets; r.Drops() && c > 0 {
				drops = append(drops, fmt.Sprintf("%s %.0f/s", r, rate(c, prev.counters[r.String()].Packets)))
			}
		}
		fmt.Fprintf(v.w, "%3.0fs  sent %.0f pkt/s  dropped %s  auto-blocked %d  function %.0f req/s p99 %s errors %d\n",
			elapsed.Seconds(), rate(sum64(cur.sent), sum64(prev.sent)), strings.Join(drops, ", "),
			cur.autoBlocks, fnRPS, fmtLatency(cur.fn.P99), cur.fn.Failed)
		return
	}

	var b strings.Builder
	b.WriteString(clearScreen)
	fmt.Fprintf(&b, "aegis lab %s   %s of %s   Ctrl-C stops and cleans up\n", v.id, elapsed, v.total)
	fmt.Fprintf(&b, "attacker %s (blocklisted %s, forged %s) -> edge %s\nclient %s -> function http://%s%s\n\n",
		AttackerAddr, BlockedAddr, SpoofedPrefix, EdgeAttackerAddr, ClientAddr, gatewayAddr(), FunctionRoute)
	const row = "%-16s %12v %10v\n"
	fmt.Fprintf(&b, row, "ATTACKER", "SENT", "PKT/S")
	for _, s := range streamOrder {
		fmt.Fprintf(&b, row, s, cur.sent[s], fmt.Sprintf("%.0f", rate(cur.sent[s], prev.sent[s])))
	}
	fmt.Fprintf(&b, "\n"+row, "SHIELD", "PACKETS", "PKT/S")
	for _, r := range shield.Reasons() {
		c, p := cur.counters[r.String()].Packets, prev.counters[r.String()].Packets
		if c == 0 && !r.Drops() {
			continue
		}
		fmt.Fprintf(&b, row, r, c, fmt.Sprintf("%.0f", rate(c, p)))
	}
	fmt.Fprintf(&b, "auto-blocked sources: %d\n\n", cur.autoBlocks)
	fmt.Fprintf(&b, "%-16s %12s %10s %10s\n", "FUNCTION", "REQ/S", "P99", "ERRORS")
	fmt.Fprintf(&b, "%-16s %12.0f %10s %10d\n", FunctionRoute, fnRPS, fmtLatency(cur.fn.P99), cur.fn.Failed)
	io.WriteString(v.w, b.String())
}

// drawFleet shows one line per edge for the interval between prev and cur
// (one sample per edge, the function's in the first).
func (v *view) drawFleet(nodes []*nodeProcess, prev, cur []sample) {
	secs := cur[0].at.Sub(prev[0].at).Seconds()
	if secs <= 0 {
		return
	}
	rate := func(c, p uint64) float64 { return float64(c-min(p, c)) / secs }
	elapsed := cur[0].at.Sub(v.start).Round(time.Second)
	for i, nd := range nodes {
		var drops []string
		for _, r := range shield.Reasons() {
			if c := cur[i].counters[r.String()].Packets; r.Drops() && c > 0 {
				drops = append(drops, fmt.Sprintf("%s %.0f/s", r, rate(c, prev[i].counters[r.String()].Packets)))
			}
		}
		fmt.Fprintf(v.w, "%3.0fs  %-6s  dropped %s  auto-blocked %d", elapsed.Seconds(), nd.names.Name, strings.Join(drops, ", "), cur[i].autoBlocks)
		if i == 0 {
			fmt.Fprintf(v.w, "  sent %.0f pkt/s to all edges  function %.0f req/s p99 %s errors %d",
				rate(sum64(cur[i].sent), sum64(prev[i].sent)), float64(cur[i].fn.OK)/secs, fmtLatency(cur[i].fn.P99), cur[i].fn.Failed)
		}
		fmt.Fprintln(v.w)
	}
}

func sum64(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func fmtLatency(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// Summary is what a lab run showed.
type Summary struct {
	ID       string
	Duration time.Duration
	// Fleet says the run was a fleet lab's, with Edges its edges.
	Fleet bool
	Edges []EdgeSummary
	// Sent counts the attacker's packets by stream (StreamSYN, ...);
	// Refused those its own kernel would not queue.
	Sent    map[string]uint64
	Refused uint64
	// Shield counts packets by reason ("passed", "rate_syn", ...), on both
	// edge links, client traffic included (of every edge, in a fleet lab).
	Shield map[string]uint64
	// AutoBlocked is how many sources were blocked automatically at the end.
	AutoBlocked int
	// Function calls from the client: answered 200, and everything else.
	OK, Failed int
	P50, P99   time.Duration
}

// EdgeSummary is what one edge of a fleet lab showed.
type EdgeSummary struct {
	Name string
	// Applied says the edge listed the fleet block, Propagation how long
	// after the hub acknowledged it.
	Applied     bool
	Propagation time.Duration
	Shield      map[string]uint64
	AutoBlocked int
}

// Dropped is the number of packets the shield dropped, for any reason.
func (s Summary) Dropped() uint64 {
	var n uint64
	for _, r := range shield.Reasons() {
		if r.Drops() {
			n += s.Shield[r.String()]
		}
	}
	return n
}

// Check returns why the run did not show what the lab is for, or nil: the
// shield dropped the blocklisted source and the flood, and the function
// answered.
func (s Summary) Check() error {
	if s.Fleet {
		return s.checkFleet()
	}
	var problems []string
	if s.Shield[shield.ReasonBlockedExact.String()] == 0 {
		problems = append(problems, "the blocklisted source was never dropped")
	}
	if s.Shield[shield.ReasonRateSYN.String()]+s.Shield[shield.ReasonRateUDP.String()]+s.Shield[shield.ReasonAutoBlocked.String()] == 0 {
		problems = append(problems, "the flood was never rate-limited or blocked")
	}
	if s.OK == 0 {
		problems = append(problems, "the function never answered 200")
	}
	if len(problems) > 0 {
		return fmt.Errorf("the lab did not show the shield working: %s", strings.Join(problems, "; "))
	}
	return nil
}

// checkFleet is Check for a fleet lab: every edge listed the block
// published on the hub and dropped the blocked source's packets, and the
// function answered.
func (s Summary) checkFleet() error {
	var problems []string
	if len(s.Edges) < 2 {
		problems = append(problems, fmt.Sprintf("%d edges ran, not %d", len(s.Edges), FleetEdges))
	}
	for _, e := range s.Edges {
		if !e.Applied {
			problems = append(problems, e.Name+" never listed the fleet block")
		}
		if e.Shield[shield.ReasonBlockedExact.String()] == 0 {
			problems = append(problems, e.Name+" never dropped the blocklisted source")
		}
	}
	if s.OK == 0 {
		problems = append(problems, "the function never answered 200")
	}
	if len(problems) > 0 {
		return fmt.Errorf("the lab did not show the fleet block working: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Write prints the summary.
func (s Summary) Write(w io.Writer) {
	sent := sum64(s.Sent)
	fmt.Fprintf(w, "\nsummary of lab %s (%s)\n", s.ID, s.Duration.Round(100*time.Millisecond))
	var parts []string
	for _, st := range streamOrder {
		parts = append(parts, fmt.Sprintf("%s %d", st, s.Sent[st]))
	}
	fmt.Fprintf(w, "  attacker sent:   %d packets (%s)\n", sent, strings.Join(parts, ", "))
	dropped := s.Dropped()
	share := 0.0
	if sent > 0 {
		share = 100 * float64(dropped) / float64(sent)
	}
	fmt.Fprintf(w, "  shield dropped:  %d packets (%.1f%% of the attack)\n", dropped, share)
	for _, r := range shield.Reasons() {
		if n := s.Shield[r.String()]; n > 0 {
			fmt.Fprintf(w, "    %-16s %d\n", r.String()+":", n)
		}
	}
	fmt.Fprintf(w, "  auto-blocked sources at the end: %d\n", s.AutoBlocked)
	for _, e := range s.Edges {
		applied := "fleet block NOT listed"
		if e.Applied {
			applied = "fleet block listed after " + fmtLatency(e.Propagation)
		}
		var dropped uint64
		for _, r := range shield.Reasons() {
			if r.Drops() {
				dropped += e.Shield[r.String()]
			}
		}
		fmt.Fprintf(w, "  %s: %s; dropped %d packets, blocklisted %d, auto-blocked sources %d\n",
			e.Name, applied, dropped, e.Shield[shield.ReasonBlockedExact.String()], e.AutoBlocked)
	}
	calls := s.OK + s.Failed
	success := 0.0
	if calls > 0 {
		success = 100 * float64(s.OK) / float64(calls)
	}
	fmt.Fprintf(w, "  function %s: %d requests, %d answered 200 (%.2f%%), p50 %s, p99 %s\n",
		FunctionRoute, calls, s.OK, success, fmtLatency(s.P50), fmtLatency(s.P99))
}
