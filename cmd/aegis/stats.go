package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
)

func newStatsCmd(e *env) *cobra.Command {
	var (
		asJSON, watch bool
		interval      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stats [--json] [--watch [--interval 1s]]",
		Short: "Show the shield's drops per reason, list fill, auto-blocks and function traffic",
		Long: "Read the node's metrics through the admin socket and show them as a table. With --watch the " +
			"table refreshes and rates (packets/s, requests/s) and latency percentiles cover the last interval; " +
			"without it, totals since the node started.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usageError{fmt.Errorf("--interval must be positive")}
			}
			scrape := func() (snapshot, error) {
				raw, err := e.client().Metrics(cmd.Context())
				if err != nil {
					return snapshot{}, err
				}
				return parseSnapshot(raw)
			}
			prev, err := scrape()
			if err != nil {
				return err
			}
			if !watch {
				return writeStats(e.stdout, prev, nil, asJSON)
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-tick.C:
				}
				cur, err := scrape()
				if err != nil {
					return err
				}
				if !asJSON {
					fmt.Fprint(e.stdout, "\x1b[H\x1b[2J")
				}
				if err := writeStats(e.stdout, cur, &prev, asJSON); err != nil {
					return err
				}
				prev = cur
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per interval with --watch)")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval with --watch")
	return cmd
}

// snapshot is the part of the node's metrics the stats view shows.
type snapshot struct {
	At         time.Time
	Packets    map[string]float64 // by reason, enforce mode
	Monitored  map[string]float64 // by reason, what monitor mode would have dropped
	Bytes      map[string]float64
	Lists      map[string][2]float64 // "block ipv4" -> entries, limit
	AutoBlocks float64
	Audit      float64
	Functions  map[string]*fnStats
}

type fnStats struct {
	Requests float64
	Errors   float64
	// Buckets are the latency histogram's cumulative counts by upper bound.
	Buckets map[float64]float64
}

func parseSnapshot(raw []byte) (snapshot, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return snapshot{}, fmt.Errorf("parsing metrics: %w", err)
	}
	s := snapshot{At: time.Now(), Packets: map[string]float64{}, Monitored: map[string]float64{}, Bytes: map[string]float64{},
		Lists: map[string][2]float64{}, Functions: map[string]*fnStats{}}
	fn := func(name string) *fnStats {
		if s.Functions[name] == nil {
			s.Functions[name] = &fnStats{Buckets: map[float64]float64{}}
		}
		return s.Functions[name]
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			l := labels(m)
			switch name {
			case "aegis_shield_packets_total":
				if l["mode"] == "monitor" {
					s.Monitored[l["reason"]] = m.GetCounter().GetValue()
				} else {
					s.Packets[l["reason"]] = m.GetCounter().GetValue()
				}
			case "aegis_shield_bytes_total":
				if l["mode"] == "enforce" {
					s.Bytes[l["reason"]] = m.GetCounter().GetValue()
				}
			case "aegis_shield_list_entries", "aegis_shield_list_limit_entries":
				k := l["list"] + " " + l["family"]
				v := s.Lists[k]
				if name == "aegis_shield_list_entries" {
					v[0] = m.GetGauge().GetValue()
				} else {
					v[1] = m.GetGauge().GetValue()
				}
				s.Lists[k] = v
			case "aegis_shield_auto_blocked_sources":
				s.AutoBlocks = m.GetGauge().GetValue()
			case "aegis_audit_records_total":
				s.Audit = m.GetCounter().GetValue()
			case "aegis_gateway_requests_total":
				f := fn(l["function"])
				f.Requests += m.GetCounter().GetValue()
				if l["error"] != "" {
					f.Errors += m.GetCounter().GetValue()
				}
			case "aegis_gateway_request_duration_seconds":
				for _, b := range m.GetHistogram().GetBucket() {
					fn(l["function"]).Buckets[b.GetUpperBound()] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return s, nil
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// quantile estimates the q-quantile of the observations between two
// cumulative histograms (prev nil: since the start) as the upper bound of
// the bucket it falls in.
func quantile(cur, prev map[float64]float64, q float64) float64 {
	bounds := make([]float64, 0, len(cur))
	for b := range cur {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	total := 0.0
	if len(bounds) > 0 {
		total = cur[bounds[len(bounds)-1]] - prev[bounds[len(bounds)-1]]
	}
	if total <= 0 {
		return math.NaN()
	}
	for _, b := range bounds {
		if cur[b]-prev[b] >= q*total {
			return b
		}
	}
	return math.Inf(1)
}

// statsView is what --json prints.
type statsView struct {
	Time       time.Time            `json:"time"`
	Interval   float64              `json:"interval_seconds,omitempty"`
	Reasons    map[string]reasonRow `json:"reasons"`
	Lists      map[string][2]int64  `json:"lists"`
	AutoBlocks int64                `json:"auto_blocked_sources"`
	Audit      int64                `json:"audit_records"`
	Functions  map[string]fnRow     `json:"functions"`
}

type reasonRow struct {
	Packets   int64   `json:"packets"`
	PPS       float64 `json:"pps,omitempty"`
	Monitored int64   `json:"monitored_packets,omitempty"`
}

type fnRow struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"rps,omitempty"`
	P50ms    float64 `json:"p50_ms,omitempty"`
	P99ms    float64 `json:"p99_ms,omitempty"`
}

func buildView(cur snapshot, prev *snapshot) statsView {
	v := statsView{Time: cur.At, Reasons: map[string]reasonRow{}, Lists: map[string][2]int64{},
		AutoBlocks: int64(cur.AutoBlocks), Audit: int64(cur.Audit), Functions: map[string]fnRow{}}
	secs := 0.0
	if prev != nil {
		secs = cur.At.Sub(prev.At).Seconds()
		v.Interval = secs
	}
	for r, p := range cur.Packets {
		row := reasonRow{Packets: int64(p), Monitored: int64(cur.Monitored[r])}
		if secs > 0 {
			row.PPS = (p - prev.Packets[r]) / secs
		}
		v.Reasons[r] = row
	}
	for k, l := range cur.Lists {
		v.Lists[k] = [2]int64{int64(l[0]), int64(l[1])}
	}
	for name, f := range cur.Functions {
		row := fnRow{Requests: int64(f.Requests), Errors: int64(f.Errors)}
		var before map[float64]float64
		if prev != nil && prev.Functions[name] != nil {
			before = prev.Functions[name].Buckets
			if secs > 0 {
				row.RPS = (f.Requests - prev.Functions[name].Requests) / secs
			}
		} else if prev != nil && secs > 0 {
			row.RPS = f.Requests / secs
		}
		if p := quantile(f.Buckets, before, 0.5); !math.IsNaN(p) {
			row.P50ms = p * 1000
		}
		if p := quantile(f.Buckets, before, 0.99); !math.IsNaN(p) {
			row.P99ms = p * 1000
		}
		v.Functions[name] = row
	}
	return v
}

func writeStats(w io.Writer, cur snapshot, prev *snapshot, asJSON bool) error {
	v := buildView(cur, prev)
	if asJSON {
		return json.NewEncoder(w).Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "REASON\tPACKETS\tPKT/S\tMONITORED\t\n")
	reasons := make([]string, 0, len(v.Reasons))
	for r := range v.Reasons {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		row := v.Reasons[r]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t\n", r, row.Packets, row.PPS, row.Monitored)
	}
	tw.Flush()
	lists := make([]string, 0, len(v.Lists))
	for k := range v.Lists {
		lists = append(lists, k)
	}
	slices.Sort(lists)
	var parts []string
	for _, k := range lists {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, v.Lists[k][0], v.Lists[k][1]))
	}
	fmt.Fprintf(w, "\nlists: %s\nauto-blocked sources: %d   audit records: %d\n", strings.Join(parts, ", "), v.AutoBlocks, v.Audit)
	if len(v.Functions) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "FUNCTION\tREQUESTS\tERRORS\tREQ/S\tP50 MS\tP99 MS\t\n")
		names := make([]string, 0, len(v.Functions))
		for n := range v.Functions {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			f := v.Functions[n]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t\n", n, f.Requests, f.Errors, f.RPS, f.P50ms, f.P99ms)
		}
		tw.Flush()
	}
	return nil
}
