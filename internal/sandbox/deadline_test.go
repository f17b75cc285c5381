//go:build linux

package sandbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// A worker that keeps making host calls, refused and answered, must not
// hold its request open: the supervisor grants one extension, never for a
// refused call, and kills the worker at the deadline plus that extension.
func TestHostCallsExtendTheDeadlineOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  string // the worker's calls, repeated forever
	}{
		{"refused then answered", "refused module"},
		{"answered only", "module"},
		{"refused only", "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[string]int{}
			host := HostServerFunc(func(_ context.Context, _, op string, _ []byte) ([]byte, error) {
				mu.Lock()
				calls[op]++
				mu.Unlock()
				if op == "refused" {
					return nil, errors.New("refused by policy")
				}
				return []byte("ok"), nil
			})
			p := newTestPool(t, Config{Size: 1, Handler: HandlerHostLoop, Host: host})
			timeout, extension := testutil.Scale(200*time.Millisecond), testutil.Scale(300*time.Millisecond)
			var asked []string
			start := time.Now()
			_, err := p.DoExchange(context.Background(), "f", []byte(tc.ops), Exchange{
				Deadline: start.Add(timeout),
				Extend: func(op string) time.Duration {
					asked = append(asked, op)
					return extension
				},
			})
			elapsed := time.Since(start)
			if !errors.Is(err, ErrDeadline) {
				t.Fatalf("request ended with %v, want %v", err, ErrDeadline)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls["refused"]+calls["module"] < 3 {
				t.Fatalf("the worker made only %v host calls: the test proves nothing", calls)
			}
			want := 0
			if calls["module"] > 0 {
				want = 1
			}
			if len(asked) != want {
				t.Errorf("extension asked %d times (%v) for calls %v, want %d", len(asked), asked, calls, want)
			}
			for _, op := range asked {
				if op == "refused" {
					t.Errorf("a refused call was offered an extension")
				}
			}
			// Before the fix every call moved the deadline and the request
			// never ended; a loose bound keeps a busy machine green.
			if limit := 20 * (timeout + extension); elapsed > limit {
				t.Errorf("request held for %v, over %v", elapsed, limit)
			}
			t.Logf("%v host calls; ended after %v", calls, elapsed)
		})
	}
}
