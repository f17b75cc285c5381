// Command loadgen drives an HTTP endpoint with a fixed number of clients and
// prints requests per second and latency percentiles (see package loadgen).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aegis-edge/aegis/internal/loadgen"
)

func main() {
	var o loadgen.Options
	var asJSON bool
	flag.StringVar(&o.URL, "url", "", "URL to request")
	flag.StringVar(&o.Host, "host", "", "Host header")
	flag.IntVar(&o.Concurrency, "c", 16, "concurrent clients")
	flag.DurationVar(&o.Duration, "d", 10*time.Second, "duration")
	flag.IntVar(&o.Warmup, "warmup", 20, "warm-up requests per run")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	flag.Parse()
	if o.URL == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	r, err := loadgen.Run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if asJSON {
		json.NewEncoder(os.Stdout).Encode(map[string]any{
			"requests": r.Requests, "errors": r.Errors, "rps": r.RPS,
			"p50_us": r.P50.Microseconds(), "p90_us": r.P90.Microseconds(), "p99_us": r.P99.Microseconds(), "max_us": r.Max.Microseconds(),
		})
		return
	}
	fmt.Println(r)
}
