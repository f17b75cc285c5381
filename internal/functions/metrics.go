package functions

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	fuel     *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_gateway_requests_total",
			Help: "Requests answered by the gateway, by function, status code and error cause (empty when served).",
		}, []string{"function", "code", "error"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aegis_gateway_request_duration_seconds",
			Help:    "Time from routing a request to its answer, by function.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18), // 50 µs .. 6.5 s
		}, []string{"function"}),
		fuel: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aegis_gateway_fuel_used_instructions",
			Help:    "Fuel (instruction budget) a request used, by function.",
			Buckets: prometheus.ExponentialBuckets(1000, 4, 14), // 1e3 .. 6.7e10
		}, []string{"function"}),
	}
}

func (m *metrics) observe(fn string, status int, cause string, d time.Duration, fuel int64) {
	m.requests.WithLabelValues(fn, strconv.Itoa(status), cause).Inc()
	m.duration.WithLabelValues(fn).Observe(d.Seconds())
	if fuel > 0 {
		m.fuel.WithLabelValues(fn).Observe(float64(fuel))
	}
}

// forget drops a removed function's series.
func (m *metrics) forget(fn string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"function": fn})
	m.duration.DeleteLabelValues(fn)
	m.fuel.DeleteLabelValues(fn)
}

// Collectors returns the gateway's metrics for registration.
func (r *Registry) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.metrics.requests, r.metrics.duration, r.metrics.fuel}
}
