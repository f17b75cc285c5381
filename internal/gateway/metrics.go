package gateway

import "github.com/prometheus/client_golang/prometheus"

var (
	connsDesc = prometheus.NewDesc("aegis_gateway_connections",
		"Client connections the gateway holds open.", nil, nil)
	connsLimitDesc = prometheus.NewDesc("aegis_gateway_connections_limit",
		"The gateway's cap on open connections (gateway.max_conns, or derived from the open-files limit).", nil, nil)
	rejectedDesc = prometheus.NewDesc("aegis_gateway_connections_rejected_total",
		"Connections closed at accept because a cap was reached, by reason (max_conns, max_conns_per_ip).",
		[]string{"reason"}, nil)
	acceptErrorsDesc = prometheus.NewDesc("aegis_gateway_accept_errors_total",
		"Accepts that failed (such as EMFILE, out of descriptors); each backs off.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connsDesc, connsLimitDesc, rejectedDesc, acceptErrorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(st.Open))
	ch <- prometheus.MustNewConstMetric(connsLimitDesc, prometheus.GaugeValue, float64(s.Limits().MaxConns))
	for _, reason := range []string{RejectMaxConns, RejectMaxConnsPerIP} {
		ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(st.Rejected[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(acceptErrorsDesc, prometheus.CounterValue, float64(st.AcceptErrors))
}
