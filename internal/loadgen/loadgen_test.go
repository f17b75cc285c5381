package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsRequestsAndErrors(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "fn.example" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if n.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	r, err := Run(context.Background(), Options{URL: srv.URL, Host: "fn.example", Concurrency: 4, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	total := int(n.Load())
	if r.Requests+r.Errors != total || r.Errors != total/10 || r.Requests == 0 {
		t.Fatalf("result %+v, server saw %d", r, total)
	}
	if r.P50 > r.P99 || r.P99 > r.Max {
		t.Fatalf("percentiles out of order: %+v", r)
	}
	if _, err := Run(context.Background(), Options{URL: srv.URL, Warmup: 1, Duration: time.Millisecond}); err == nil {
		t.Fatal("a failing warm-up was not reported")
	}
}
