package node

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/store"
)

// scrape returns the node's metrics in the text format.
func scrape(t *testing.T, n *Node) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("series %s missing from:\n%s", series, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetrics(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	if _, err := n.Add(AddRequest{List: store.Blocklist, Targets: prefixes(t, "192.0.2.1", "2001:db8::/48")}); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, n)
	checks := map[string]float64{
		`aegis_shield_list_entries{family="ipv4",list="block"}`:       1,
		`aegis_shield_list_entries{family="ipv6",list="block"}`:       1,
		`aegis_shield_list_limit_entries{family="ipv4",list="block"}`: float64(cfg.Shield.Limits.IPv4),
		`aegis_shield_packets_total{mode="enforce",reason="passed"}`:  0,
		`aegis_gateway_functions`:                                     0,
	}
	for series, want := range checks {
		if got := metricValue(t, text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	seq, _ := n.audit.Head()
	if got := metricValue(t, text, "aegis_audit_records_total"); got != float64(seq) || seq == 0 {
		t.Errorf("aegis_audit_records_total = %v, audit head %d", got, seq)
	}
	for _, name := range []string{"aegis_shield_bytes_total", "aegis_shield_auto_blocked_sources", "go_goroutines"} {
		if !strings.Contains(text, "\n"+name) && !strings.HasPrefix(text, name) {
			t.Errorf("%s missing", name)
		}
	}
}
