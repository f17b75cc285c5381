//go:build linux

package shield

import (
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	s := newTestShield(t, noLimits())
	put(t, s, Blocklist, time.Time{}, "192.0.2.66")
	blocked := netlab.UDP4("192.0.2.66", dst4).Bytes()
	for range 3 {
		run(t, s, blocked)
	}
	run(t, s, netlab.UDP4("192.0.2.67", dst4).Bytes())

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s))
	if n, err := testutil.GatherAndCount(reg, "aegis_shield_packets_total"); err != nil || n != 2*len(Reasons()) {
		t.Fatalf("packet series = %d, %v; want one per reason and mode (%d)", n, err, 2*len(Reasons()))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += " " + lp.GetName() + "=" + lp.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				got[key] = c.GetValue()
			} else {
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"aegis_shield_packets_total mode=enforce reason=blocked_exact": 3,
		"aegis_shield_bytes_total mode=enforce reason=blocked_exact":   float64(3 * len(blocked)),
		"aegis_shield_packets_total mode=enforce reason=passed":        1,
		"aegis_shield_packets_total mode=monitor reason=blocked_exact": 0,
		"aegis_shield_auto_blocked_sources":                            0,
		"aegis_shield_scrape_failed":                                   0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
