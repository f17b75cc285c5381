package functions

import (
	"net/http"
	"strconv"
	"sync"
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

// series are one deployment's own series, looked up on its first request
// rather than on every one (a lookup hashes the labels under a lock).
type series struct {
	once     sync.Once
	served   prometheus.Counter // code 200, no error: most requests
	duration prometheus.Observer
	fuel     prometheus.Observer
}

func (m *metrics) observe(s *series, fn string, status int, cause string, d time.Duration, fuel int64) {
	s.once.Do(func() {
		s.served = m.requests.WithLabelValues(fn, "200", "")
		s.duration = m.duration.WithLabelValues(fn)
		s.fuel = m.fuel.WithLabelValues(fn)
	})
	if status == http.StatusOK && cause == "" {
		s.served.Inc()
	} else {
		m.requests.WithLabelValues(fn, strconv.Itoa(status), cause).Inc()
	}
	s.duration.Observe(d.Seconds())
	if fuel > 0 {
		s.fuel.Observe(float64(fuel))
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
