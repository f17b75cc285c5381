package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
)

// BenchmarkBlockAddRoundTrip measures one `block add` through the admin
// socket to a durable store write and the kernel map, reporting p50 and p99.
func BenchmarkBlockAddRoundTrip(b *testing.B) {
	cfg := testNodeConfig(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, cfg, discardLogger(), nil) }()
	waitForNode(b, cfg.Admin.Socket, done)
	c := admin.NewClient(cfg.Admin.Socket)

	addr := netip.MustParseAddr("10.0.0.0")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		addr = addr.Next()
		start := time.Now()
		if _, err := c.Add(ctx, "block", admin.AddRequest{Targets: []string{addr.String()}}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(fmt.Errorf("node: %w", err))
	}
}
