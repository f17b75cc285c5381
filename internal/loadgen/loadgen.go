package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Options describe a run.
type Options struct {
	URL         string
	Host        string // Host header, if not the URL's
	Method      string // default GET
	Body        []byte
	Concurrency int
	Duration    time.Duration
	// Warmup requests are sent (by every client) before measuring.
	Warmup int
}

// Result summarises a run.
type Result struct {
	Requests      int
	Errors        int // transport errors and non-2xx answers
	Duration      time.Duration
	RPS           float64
	P50, P90, P99 time.Duration
	Max           time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f req/s, p50 %s, p90 %s, p99 %s, max %s, %d errors",
		r.Requests, r.Duration.Round(time.Millisecond), r.RPS, r.P50, r.P90, r.P99, r.Max, r.Errors)
}

// Run sends requests until the duration ends.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	send := func() (time.Duration, bool) {
		var body io.Reader
		if o.Body != nil {
			body = bytes.NewReader(o.Body)
		}
		req, err := http.NewRequestWithContext(ctx, o.Method, o.URL, body)
		if err != nil {
			return 0, false
		}
		if o.Host != "" {
			req.Host = o.Host
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return time.Since(start), false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode/100 == 2
	}
	for range o.Warmup {
		if _, ok := send(); !ok {
			return Result{}, fmt.Errorf("warm-up request to %s failed", o.URL)
		}
	}

	var (
		mu     sync.Mutex
		lats   []time.Duration
		errors int
		wg     sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(o.Duration)
	for range o.Concurrency {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			bad := 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				d, ok := send()
				if !ok {
					bad++
					continue
				}
				local = append(local, d)
			}
			mu.Lock()
			lats = append(lats, local...)
			errors += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	r := Result{Requests: len(lats), Errors: errors, Duration: elapsed, RPS: float64(len(lats)) / elapsed.Seconds()}
	if len(lats) > 0 {
		r.P50, r.P90, r.P99 = pct(lats, 50), pct(lats, 90), pct(lats, 99)
		r.Max = lats[len(lats)-1]
	}
	return r, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}
