//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// counter is a host that counts the "count" calls of HandlerDelay by token:
// each is one run of a request in a worker.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
}

func newCounter() *counter { return &counter{runs: map[string]int{}} }

func (c *counter) ServeHost(_ context.Context, _, op string, data []byte) ([]byte, error) {
	if op != "count" {
		return nil, fmt.Errorf("unexpected host call %q", op)
	}
	c.mu.Lock()
	c.runs[string(data)]++
	c.mu.Unlock()
	return nil, nil
}

func (c *counter) get(token string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[token]
}

type result struct {
	out []byte
	err error
}

func doAsync(p *Pool, req string) chan result {
	ch := make(chan result, 1)
	go func() {
		out, err := p.Do(context.Background(), "fn", []byte(req))
		ch <- result{out, err}
	}()
	return ch
}

// waitBusy waits until n workers of p serve a request.
func waitBusy(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(testutil.Scale(10 * time.Second))
	for p.Stats().Busy < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers busy, want %d", p.Stats().Busy, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClaimsDecideOnce(t *testing.T) {
	c, page, err := newClaims()
	if err != nil {
		t.Fatal(err)
	}
	defer c.unmap()
	page.Close()
	c.offer(7)
	c.offer(8) // the other parity's word: 7 is untouched
	if !c.claim(7) || c.withdraw(7) {
		t.Fatal("request 7: claimed, then withdrawn too")
	}
	if !c.withdraw(8) || c.claim(8) {
		t.Fatal("request 8: withdrawn, then claimed too")
	}
	c.offer(10) // 8's word, for a later request: 8 stays withdrawn
	if c.claim(8) || !c.claim(10) {
		t.Fatal("a later request's offer revived a withdrawn one, or was refused")
	}
	if c.claim(9) || (claims{}).withdraw(1) || !(claims{}).claim(1) {
		t.Fatal("an unoffered id was claimed, or a pool without pipelining decided")
	}
}

// A request sent to a busy worker runs once the one before it is answered,
// and is answered itself, also when it arrives while the one in flight
// waits for a host call's answer.
func TestPipelinedRequestFollowsTheOneInFlight(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true, PipelineStall: testutil.Scale(10 * time.Second)})
	first := doAsync(p, "300 first")
	waitBusy(t, p, 1)
	// Running: the worker has claimed it (and will not claim the next
	// one before it answers).
	for deadline := time.Now().Add(testutil.Scale(10 * time.Second)); p.Stats().Running != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the first request never ran", p.Stats())
		}
	}
	second := doAsync(p, "0 second")
	for _, c := range []struct {
		ch   chan result
		want string
	}{{first, "first"}, {second, "second"}} {
		r := <-c.ch
		if r.err != nil || string(r.out) != c.want {
			t.Fatalf("got %q, %v; want %q", r.out, r.err, c.want)
		}
		if n := host.get(c.want); n != 1 {
			t.Fatalf("%s ran %d times", c.want, n)
		}
	}
	if st := p.Stats(); st.Pipelined != 1 || st.Replaced != 0 {
		t.Fatalf("stats %+v: want one request pipelined, no worker replaced", st)
	}
}

// A request queued behind a slow one (another tenant's, say) is taken back
// after the stall and served by the next free worker: it does not wait for
// the slow one.
func TestPipelinedRequestLeavesASlowOne(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 2, Handler: HandlerDelay, Host: host, Pipeline: true})
	slow := doAsync(p, fmt.Sprint(testutil.Scale(20*time.Second).Milliseconds(), " slow"))
	waitBusy(t, p, 1)
	quick := doAsync(p, "200 quick")
	waitBusy(t, p, 2)
	// Both workers are busy; the slow one's offer came first.
	r := <-doAsync(p, "0 queued")
	if r.err != nil || string(r.out) != "queued" {
		t.Fatalf("queued request: %q, %v", r.out, r.err)
	}
	select {
	case r := <-slow:
		t.Fatalf("the slow request ended (%q, %v) before the one queued behind it", r.out, r.err)
	default:
	}
	if r := <-quick; r.err != nil {
		t.Fatal(r.err)
	}
	if st := p.Stats(); st.Pipelined < 1 || st.Withdrawn != 1 {
		t.Fatalf("stats %+v: want the queued request withdrawn once", st)
	}
	if n := host.get("queued"); n != 1 {
		t.Fatalf("the queued request ran %d times", n)
	}
}

// A request queued behind one whose worker dies never started: it is
// served by the replacement, not failed with the worker.
func TestPipelinedRequestOutlivesItsWorker(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true, PipelineStall: testutil.Scale(10 * time.Second)})
	dying := doAsync(p, "300 dying exit")
	waitBusy(t, p, 1)
	queued := doAsync(p, "0 queued")
	if r := <-dying; !errors.Is(r.err, ErrWorkerCrashed) {
		t.Fatalf("dying request: %q, %v; want ErrWorkerCrashed", r.out, r.err)
	}
	if r := <-queued; r.err != nil || string(r.out) != "queued" {
		t.Fatalf("queued request: %q, %v", r.out, r.err)
	}
	if n := host.get("queued"); n != 1 {
		t.Fatalf("the queued request ran %d times", n)
	}
	if st := p.Stats(); st.Pipelined != 1 || st.Replaced != 1 {
		t.Fatalf("stats %+v: want one request pipelined, one worker replaced", st)
	}
}

// The race the claim page decides: with a stall of a microsecond nearly
// every queued request is withdrawn while its worker may be starting it.
// Every request must run exactly once and get its own answer, and no worker
// may be lost to a mixed-up exchange. Variant: a stall long enough that
// requests mostly wait their turn.
func TestPipelinedRequestsRunOnce(t *testing.T) {
	for _, stall := range []time.Duration{time.Microsecond, 300 * time.Microsecond} {
		t.Run(stall.String(), func(t *testing.T) {
			host := newCounter()
			p := newTestPool(t, Config{Size: 2, Handler: HandlerDelay, Host: host, Pipeline: true, PipelineStall: stall})
			const clients, each = 12, 40
			var wg sync.WaitGroup
			errs := make(chan error, clients*each)
			for c := range clients {
				wg.Go(func() {
					for i := range each {
						token := fmt.Sprintf("c%d-%d", c, i)
						out, err := p.Do(context.Background(), "fn", fmt.Appendf(nil, "%d %s", rand.IntN(3), token))
						if err != nil || string(out) != token {
							errs <- fmt.Errorf("%s: %q, %v", token, out, err)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for c := range clients {
				for i := range each {
					if n := host.get(fmt.Sprintf("c%d-%d", c, i)); n != 1 {
						t.Errorf("c%d-%d ran %d times", c, i, n)
					}
				}
			}
			st := p.Stats()
			t.Logf("stats %+v", st)
			if st.Replaced != 0 || st.Pipelined == 0 {
				t.Fatalf("stats %+v: want requests pipelined and no worker replaced", st)
			}
		})
	}
}
