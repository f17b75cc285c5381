//go:build linux

package lab

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
)

// clientWorkers is how many requests the client keeps in flight.
const clientWorkers = 4

// maxSamples bounds the latencies kept for the summary's percentiles.
const maxSamples = 1 << 20

// client calls the function from the client namespace, closed loop: each
// worker sends its next request when the previous one is answered.
type client struct {
	url string
	tr  *http.Transport
	hc  *http.Client
	wg  sync.WaitGroup

	mu     sync.Mutex
	window []time.Duration // latencies of answered requests since the last take
	// all is a uniform sample of every answered request's latency, at
	// most maxSamples long, so a long run's memory stays bounded.
	all        []time.Duration
	maxSamples int
	ok         int // 200 answers
	failed     int // transport errors and other statuses
	winOK      int
	winBad     int
}

func newClient(ns *netlab.Namespace, url string) *client {
	tr := &http.Transport{
		// Connections are dialled from a thread inside the client namespace;
		// the socket stays there whichever thread uses it later.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		MaxIdleConnsPerHost: clientWorkers,
		DisableCompression:  true,
	}
	return &client{url: url, tr: tr, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}, maxSamples: maxSamples}
}

func (c *client) start(ctx context.Context) {
	for range clientWorkers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for ctx.Err() == nil {
				c.call(ctx)
			}
		}()
	}
}

func (c *client) call(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	ok := false
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ok = err == nil && resp.StatusCode == http.StatusOK
	}
	took := time.Since(start)
	if ctx.Err() != nil {
		return // cut short by the end of the run: not the function's doing
	}
	c.record(ok, took)
	if !ok {
		// Do not spin on a gateway that is not there yet or refuses.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *client) record(ok bool, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		c.failed++
		c.winBad++
		return
	}
	c.ok++
	c.winOK++
	c.window = append(c.window, took)
	// Reservoir sampling: the ok-th latency replaces a random one with
	// probability maxSamples/ok.
	if len(c.all) < c.maxSamples {
		c.all = append(c.all, took)
	} else if i := rand.IntN(c.ok); i < c.maxSamples {
		c.all[i] = took
	}
}

// interval is what the client saw since the previous take.
type interval struct {
	OK, Failed int
	P99        time.Duration
}

func (c *client) take() interval {
	c.mu.Lock()
	w, ok, bad := c.window, c.winOK, c.winBad
	c.window, c.winOK, c.winBad = nil, 0, 0
	c.mu.Unlock()
	slices.Sort(w)
	return interval{OK: ok, Failed: bad, P99: percentile(w, 0.99)}
}

// totals returns the counts and sorted latencies of the whole run.
func (c *client) totals() (ok, failed int, latencies []time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := slices.Clone(c.all)
	slices.Sort(l)
	return c.ok, c.failed, l
}

func (c *client) wait() {
	c.wg.Wait()
	c.tr.CloseIdleConnections()
}

// percentile returns the q-quantile of sorted latencies (nearest rank), or
// 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
