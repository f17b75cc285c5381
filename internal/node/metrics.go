package node

import (
	"net/http"
	"slices"

	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// topRules is how many of the most-hit rules of each list are exported.
const topRules = 10

// nodeCollector exports what the node knows beyond the shield's counters:
// list fill against limits, the most-hit rules, the audit log's length and
// the deployed functions. It reads on scrape.
type nodeCollector struct {
	n                                           *Node
	entries, limit, dirty, ruleHits, audit, fns *prometheus.Desc
	workers, starts, replaced, denied           *prometheus.Desc
	pipelined, withdrawn                        *prometheus.Desc
}

func newNodeCollector(n *Node) *nodeCollector {
	return &nodeCollector{
		n: n,
		entries: prometheus.NewDesc("aegis_shield_list_entries", "Entries on a list, by list and family.",
			[]string{"list", "family"}, nil),
		limit: prometheus.NewDesc("aegis_shield_list_limit_entries", "Capacity of a list, by list and family.",
			[]string{"list", "family"}, nil),
		dirty: prometheus.NewDesc("aegis_shield_list_dirty",
			"1 while a list's kernel maps may differ from the store after a failed sync, until the sweeper repairs them.",
			[]string{"list"}, nil),
		ruleHits: prometheus.NewDesc("aegis_shield_rule_hits_total",
			"Packets matched by the most-hit rules of each list (the top 10), by list and prefix.",
			[]string{"list", "prefix"}, nil),
		audit:   prometheus.NewDesc("aegis_audit_records_total", "Records written to the audit log.", nil, nil),
		fns:     prometheus.NewDesc("aegis_gateway_functions", "Deployed edge functions.", nil, nil),
		workers: prometheus.NewDesc("aegis_sandbox_workers", "Sandboxed worker processes alive.", nil, nil),
		starts: prometheus.NewDesc("aegis_sandbox_worker_starts_total",
			"Worker processes started, replacements included.", nil, nil),
		replaced: prometheus.NewDesc("aegis_sandbox_worker_deaths_total",
			"Workers killed or lost (deadline overrun, crash, protocol violation) and replaced.", nil, nil),
		pipelined: prometheus.NewDesc("aegis_sandbox_pipelined_requests_total",
			"Requests sent to a busy worker to start once it has answered the one in flight (functions.no_pipeline off).", nil, nil),
		withdrawn: prometheus.NewDesc("aegis_sandbox_withdrawn_requests_total",
			"Pipelined requests taken back after waiting 5 ms behind another, then served by the next free worker.", nil, nil),
		denied: prometheus.NewDesc("aegis_sandbox_violations_total",
			"System calls the workers' seccomp filter denied, by function and system call.", []string{"function", "syscall"}, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.limit, c.dirty, c.ruleHits, c.audit, c.fns, c.workers, c.starts, c.replaced, c.pipelined, c.withdrawn, c.denied} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	for _, l := range lists.All() {
		n.mu.Lock()
		limit, dirty := n.capacity(l), n.dirty[string(l)]
		n.mu.Unlock()
		if v4, v6, err := n.store.Count(l); err == nil {
			ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(v4), string(l), "ipv4")
			ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(v6), string(l), "ipv6")
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(limit.V4), string(l), "ipv4")
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(limit.V6), string(l), "ipv6")
		}
		ch <- prometheus.MustNewConstMetric(c.dirty, prometheus.GaugeValue, boolGauge(dirty), string(l))
		rules, err := n.shield.Rules(l)
		if err != nil {
			continue
		}
		slices.SortFunc(rules, func(a, b shield.RuleState) int {
			switch {
			case a.Hits > b.Hits:
				return -1
			case a.Hits < b.Hits:
				return 1
			}
			return a.Prefix.Addr().Compare(b.Prefix.Addr())
		})
		for _, r := range rules[:min(topRules, len(rules))] {
			if r.Hits > 0 {
				ch <- prometheus.MustNewConstMetric(c.ruleHits, prometheus.CounterValue, float64(r.Hits), string(l), r.Prefix.String())
			}
		}
	}
	seq, _ := n.audit.Head()
	ch <- prometheus.MustNewConstMetric(c.audit, prometheus.CounterValue, float64(seq))
	if n.functions != nil {
		ch <- prometheus.MustNewConstMetric(c.fns, prometheus.GaugeValue, float64(len(n.functions.List())))
	}
	if n.executor != nil {
		st := n.executor.Pool().Stats()
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(st.Live))
		ch <- prometheus.MustNewConstMetric(c.starts, prometheus.CounterValue, float64(st.Started))
		ch <- prometheus.MustNewConstMetric(c.replaced, prometheus.CounterValue, float64(st.Replaced))
		ch <- prometheus.MustNewConstMetric(c.pipelined, prometheus.CounterValue, float64(st.Pipelined))
		ch <- prometheus.MustNewConstMetric(c.withdrawn, prometheus.CounterValue, float64(st.Withdrawn))
		// The pool counts by function and by syscall separately; each
		// series carries one of the two labels.
		for fn, v := range st.Violations {
			ch <- prometheus.MustNewConstMetric(c.denied, prometheus.CounterValue, float64(v), fn, "")
		}
		for sc, v := range st.ViolationsBySyscall {
			ch <- prometheus.MustNewConstMetric(c.denied, prometheus.CounterValue, float64(v), "", sc)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricCollectors are every collector of the node's metrics.
func (n *Node) metricCollectors() []prometheus.Collector {
	cs := []prometheus.Collector{shield.NewCollector(n.shield), newNodeCollector(n),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	if n.functions != nil {
		cs = append(cs, n.functions.Collectors()...)
	}
	if n.gateway != nil {
		cs = append(cs, n.gateway)
	}
	if n.executor != nil {
		cs = append(cs, n.executor.Collectors()...)
	}
	cs = append(cs, n.fleetRejected, fleetCollector{n, newFleetDescs()})
	return cs
}

// newMetricsRegistry gathers every series the node exports.
func (n *Node) newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.metricCollectors()...)
	return reg
}

// MetricsHandler serves the node's metrics in the Prometheus format.
func (n *Node) MetricsHandler() http.Handler {
	n.metricsOnce.Do(func() { n.metrics = n.newMetricsRegistry() })
	return promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// metricsMux serves /metrics alone, for the optional TCP listener.
func (n *Node) metricsMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.MetricsHandler())
	return mux
}
