//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// doWithin runs one request with its own deadline and reports its result
// and how long Do took; it fails the test if Do does not return at all
// within limit (the request was lost).
func doWithin(t *testing.T, p *Pool, req string, deadline, limit time.Duration) (result, time.Duration) {
	t.Helper()
	start := time.Now()
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		out, err := p.Do(ctx, "fn", []byte(req))
		ch <- result{out, err}
	}()
	select {
	case r := <-ch:
		return r, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("request with a deadline of %v still unanswered after %v", deadline, limit)
		return result{}, 0
	}
}

// A request too large for the socket's buffer, sent to a busy worker,
// must not wait for the request in flight to end: the write of its frame
// blocked (holding the worker's write lock) until the worker read it, that
// is until the slow request before it was answered, before the stall timer
// even started, and past the queued request's own deadline.
func TestPipelinedLargeRequestKeepsItsDeadline(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true})
	slowFor := testutil.Scale(1500 * time.Millisecond)
	slow := doAsync(p, fmt.Sprint(slowFor.Milliseconds(), " slow"))
	waitBusy(t, p, 1)
	// Spaces: the handler's fields are "0 big"; the frame is 2 MiB.
	big := "0 big" + strings.Repeat(" ", 2<<20)
	deadline := testutil.Scale(200 * time.Millisecond)
	r, took := doWithin(t, p, big, deadline, testutil.Scale(30*time.Second))
	t.Logf("large request: %q, %v after %v", r.out, r.err, took)
	if took > deadline+slowFor/2 {
		t.Errorf("a request with a deadline of %v returned after %v, behind a request of %v", deadline, took, slowFor)
	}
	if r.err == nil {
		t.Errorf("the large request was answered (%q) after its deadline", r.out)
	}
	if s := <-slow; s.err != nil || string(s.out) != "slow" {
		t.Fatalf("slow request: %q, %v", s.out, s.err)
	}
	if n := host.get("big"); n > 1 {
		t.Fatalf("the large request ran %d times", n)
	}
}

// A worker can write its claim words: here the test does it for the
// worker, marking the queued request started although the worker is still
// busy with the one before it. The queued request then cannot be
// withdrawn, but it must still end by its own deadline, not wait for the
// request before it (whose deadline may be far later, and be extended).
func TestPipelinedRequestForgedStartKeepsItsDeadline(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true})
	slowFor := testutil.Scale(2 * time.Second)
	slow := doAsync(p, fmt.Sprint(slowFor.Milliseconds(), " slow"))
	waitBusy(t, p, 1)
	forged := make(chan bool, 1)
	go func() {
		// The compromised worker's move, as soon as the request is queued.
		limit := time.Now().Add(testutil.Scale(5 * time.Second))
		for time.Now().Before(limit) {
			p.mu.Lock()
			for w := range p.workers {
				if q := w.queued; q != nil {
					ok := w.claims.claim(q.id)
					p.mu.Unlock()
					forged <- ok
					return
				}
			}
			p.mu.Unlock()
			time.Sleep(50 * time.Microsecond)
		}
		forged <- false
	}()
	deadline := testutil.Scale(300 * time.Millisecond)
	r, took := doWithin(t, p, "0 queued", deadline, testutil.Scale(30*time.Second))
	if !<-forged {
		t.Skip("the request was not queued (or withdrawn first): nothing forged")
	}
	t.Logf("queued request: %q, %v after %v", r.out, r.err, took)
	if !errors.Is(r.err, ErrDeadline) && !errors.Is(r.err, ErrWorkerCrashed) {
		t.Errorf("queued request: %q, %v; want a deadline or crash error", r.out, r.err)
	}
	if took > deadline+slowFor/2 {
		t.Errorf("a request with a deadline of %v returned after %v, behind a request of %v", deadline, took, slowFor)
	}
	<-slow // whatever it got: its worker lied
}

// The socket's deadline is shared by the requests a worker serves in turn.
// A caller that gives up just as its answer arrives has its cancellation
// run on another goroutine, which may set the deadline in the past after
// the request has ended and the one queued behind it has set its own: that
// request, which nobody cancelled, then failed with ErrDeadline and its
// worker was killed. The hook holds the cancellation back to make that
// interleaving certain.
func TestPipelinedRequestSurvivesALateCancel(t *testing.T) {
	release := make(chan struct{})
	testHookCancel = func() { <-release }
	t.Cleanup(func() { testHookCancel = nil })
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true, PipelineStall: testutil.Scale(10 * time.Second)})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan result, 1)
	go func() {
		out, err := p.Do(ctx, "fn", []byte("300 first"))
		first <- result{out, err}
	}()
	waitBusy(t, p, 1)
	second := doAsync(p, "400 second")
	for p.Stats().Pipelined == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel() // its cancellation is held by the hook, as by a busy scheduler
	if r := <-first; r.err != nil || string(r.out) != "first" {
		t.Fatalf("first request: %q, %v", r.out, r.err)
	}
	time.Sleep(testutil.Scale(50 * time.Millisecond)) // the second has its turn
	close(release)
	if r := <-second; r.err != nil || string(r.out) != "second" {
		t.Fatalf("second request, which nobody cancelled: %q, %v", r.out, r.err)
	}
	if st := p.Stats(); st.Replaced != 0 {
		t.Fatalf("stats %+v: a worker was replaced", st)
	}
}

// handlerAnswerExit is HandlerDelay, except that "MS TOKEN answer-exit"
// writes its answer itself and dies at once, before reading anything more:
// a worker that dies between answering a request and starting the one
// queued behind it (test binary only).
const handlerAnswerExit = "answer-exit"

func answerExit(ctx context.Context, req []byte, host HostCaller) ([]byte, error) {
	f := strings.Fields(string(req))
	if len(f) != 3 || f[2] != "answer-exit" {
		return delay(ctx, req, host)
	}
	if _, err := delay(ctx, []byte(f[0]+" "+f[1]), host); err != nil {
		return nil, err
	}
	hc := host.(*hostCaller)
	hc.conn.write(frame{typ: msgResponse, id: hc.id, payload: []byte(f[1])})
	os.Exit(3)
	return nil, nil
}

// A worker that dies after answering the request in flight, before it
// starts the one queued behind it: that request never ran, so it goes to
// another worker (docs/SANDBOX.md, "A request whose worker dies before
// starting it goes to another worker"), instead of failing with
// ErrWorkerCrashed once it has its turn.
func TestPipelinedRequestOutlivesAWorkerDyingAfterItsAnswer(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: handlerAnswerExit, Host: host, Pipeline: true, PipelineStall: testutil.Scale(10 * time.Second)})
	first := doAsync(p, "300 first answer-exit")
	waitBusy(t, p, 1)
	second := doAsync(p, "0 second")
	if r := <-first; r.err != nil || string(r.out) != "first" {
		t.Fatalf("first request: %q, %v", r.out, r.err)
	}
	if st := p.Stats(); st.Pipelined != 1 {
		t.Fatalf("stats %+v: the second request was not queued", st)
	}
	if r := <-second; r.err != nil || string(r.out) != "second" {
		t.Fatalf("second request, which its first worker never started: %q, %v", r.out, r.err)
	}
	if n := host.get("second"); n != 1 {
		t.Fatalf("the second request ran %d times", n)
	}
}

// A worker recycled after its answer was read, before it is handed on (here
// from Accept), went back to the idle ones although retired: its
// replacement then waited for room there, and Close, which waits for
// replacements, never returned.
func TestPipelinedRecycleBeforeTheTurnPassesThenClose(t *testing.T) {
	host := newCounter()
	p := newTestPool(t, Config{Size: 1, Handler: HandlerDelay, Host: host, Pipeline: true})
	pid := p.Reports()[0].PID
	_, err := p.DoExchange(context.Background(), "fn", []byte("0 first"), Exchange{
		Accept: func([]byte) error {
			if !p.Recycle(pid) {
				t.Error("no worker to recycle")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	limit := time.Now().Add(testutil.Scale(10 * time.Second))
	for p.Stats().Started < 2 || len(p.Reports()) < 1 || p.Reports()[0].PID == 0 {
		if time.Now().After(limit) {
			t.Fatal("no replacement started")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(testutil.Scale(100 * time.Millisecond)) // the replacement is ready
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testutil.Scale(10 * time.Second)):
		t.Fatal("Close did not return")
	}
}
