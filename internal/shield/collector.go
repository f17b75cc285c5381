package shield

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the shield's per-CPU counters to Prometheus. It reads
// the kernel maps on every scrape, so the figures are exactly what the data
// path counted, with no sampling loop in between.
type Collector struct {
	s                       *Shield
	packets, bytes, blocked *prometheus.Desc
	scrapeErrors            *prometheus.Desc
}

// NewCollector returns a Collector for s.
func NewCollector(s *Shield) *Collector {
	return &Collector{
		s: s,
		packets: prometheus.NewDesc("aegis_shield_packets_total",
			"Packets seen by the XDP program, by reason; mode=\"monitor\" counts what monitor mode would have dropped.",
			[]string{"reason", "mode"}, nil),
		bytes: prometheus.NewDesc("aegis_shield_bytes_total",
			"Bytes seen by the XDP program, by reason and mode.",
			[]string{"reason", "mode"}, nil),
		blocked: prometheus.NewDesc("aegis_shield_auto_blocked_sources",
			"Sources currently blocked automatically for flooding.", nil, nil),
		scrapeErrors: prometheus.NewDesc("aegis_shield_scrape_failed",
			"1 when this scrape could not read a shield map, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.blocked
	ch <- c.scrapeErrors
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	failed := 0.0
	if counters, err := c.s.Counters(); err == nil {
		for _, r := range Reasons() {
			for mode, set := range map[string]map[Reason]Counter{"enforce": counters.Verdicts, "monitor": counters.Monitored} {
				v := set[r]
				ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Packets), r.String(), mode)
				ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.Bytes), r.String(), mode)
			}
		}
	} else {
		failed = 1
	}
	if blocks, err := c.s.AutoBlocks(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.GaugeValue, float64(len(blocks)))
	} else {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, failed)
}
