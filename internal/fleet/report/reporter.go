package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// DefaultMaxQueue is how many reports a Reporter queues when
// Options.MaxQueue is 0.
const DefaultMaxQueue = 10_000

// Options configure a Reporter.
type Options struct {
	// Dir holds the queue (under the node's state_dir); created if
	// missing.
	Dir string
	// Name is the edge's fleet.name: its report subject's last token.
	Name string
	// Conn is the edge's connection to the hub; Run needs it.
	Conn *nats.Conn
	// Logger receives send failures; none when nil.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxQueue bounds the queue; DefaultMaxQueue when 0.
	MaxQueue int
}

// Stats are a Reporter's counters.
type Stats struct {
	// Queued is how many reports wait for the hub now.
	Queued int
	// Sent is how many the hub acknowledged.
	Sent uint64
	// Merged is how many reports were merged into a queued one.
	Merged uint64
	// Dropped is how many queued reports a full queue pushed out.
	Dropped uint64
	// Skipped is how many unreadable lines (a torn last write) the queue
	// had when it was opened.
	Skipped int
}

// Reporter queues and sends an edge's automatic-block reports. It is safe
// for concurrent use.
type Reporter struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	q       *queue
	version uint64
	stats   Stats
}

// New opens the queue in o.Dir.
func New(o Options) (*Reporter, error) {
	if err := change.ValidEdgeName(o.Name); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("report: no queue directory")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q, err := openQueue(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening the report queue: %w", err)
	}
	r := &Reporter{o: o, log: log, wake: make(chan struct{}, 1), q: q}
	r.stats.Skipped = q.skipped
	if q.skipped > 0 {
		log.Warn("report queue: skipped unreadable lines", "lines", q.skipped)
	}
	for q.len() > o.MaxQueue { // a smaller bound than the last run's
		r.dropOldest()
	}
	return r, nil
}

// Report queues prefix, which the node's shield blocked automatically
// until until (zero: no expiry), and returns once the queue is on disk.
// A prefix already queued is merged: the later time, the later expiry.
func (r *Reporter) Report(prefix netip.Prefix, until time.Time) error {
	p, err := Canonical(prefix)
	if err != nil {
		return err
	}
	now := r.o.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.q.f == nil {
		return errors.New("report: reporter closed")
	}
	r.version++
	var e *entry
	if el, ok := r.q.byKey[p]; ok {
		old := el.Value.(*entry)
		e = &entry{id: old.id, prefix: p, at: now, until: later(old.until, until), version: r.version}
		r.stats.Merged++
	} else {
		if r.q.len() >= r.o.MaxQueue {
			r.dropOldest()
		}
		e = &entry{id: r.q.nextID, prefix: p, at: now, until: until, version: r.version}
		r.q.nextID++
	}
	if err := r.q.appendLines(true, e.line()); err != nil {
		return err
	}
	r.q.put(e)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// later is the later expiry, zero (none) being the latest.
func later(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.After(a) {
		return b
	}
	return a
}

// dropOldest removes the oldest queued report. The caller locks.
func (r *Reporter) dropOldest() {
	e := r.q.order.Front().Value.(*entry)
	r.q.remove(e.id)
	r.stats.Dropped++
	// Without this line the report would come back at the next start;
	// it need not be durable (a resurrected report is merely sent).
	if err := r.q.appendLines(false, line{Done: e.id}); err != nil {
		r.log.Warn("report queue", "err", err)
	}
}

// Stats returns the counters.
func (r *Reporter) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Queued = r.q.len()
	return s
}

// Close closes the queue file. Report fails afterwards and Run returns;
// what is queued stays on disk for the next New.
func (r *Reporter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return r.q.close()
}

// sendBatch is how many queued reports Run takes at a time.
const sendBatch = 64

// Backoff bounds between failed sends.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
	sendWait   = 5 * time.Second
)

// Run sends queued reports until ctx is done or the reporter is closed,
// and returns nil then.
func (r *Reporter) Run(ctx context.Context) error {
	if r.o.Conn == nil {
		return errors.New("report: no hub connection")
	}
	js, err := jetstream.New(r.o.Conn)
	if err != nil {
		return err
	}
	subject := hub.ReportSubject(r.o.Name)
	backoff := minBackoff
	failing := false
	for {
		batch, closed := r.pending()
		if closed {
			return nil
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-r.wake:
				continue
			}
		}
		var sendErr error
		for _, e := range batch {
			msg := Report{Prefix: e.prefix, At: e.at, Until: e.until, Edge: r.o.Name}
			pctx, cancel := context.WithTimeout(ctx, sendWait)
			_, sendErr = js.Publish(pctx, subject, msg.Encode(), jetstream.WithMsgID(r.msgID(e)))
			cancel()
			if sendErr != nil {
				break
			}
			r.sent(e)
		}
		if ctx.Err() != nil {
			return nil
		}
		if sendErr != nil {
			if !failing {
				r.log.Warn("fleet: cannot send auto-block reports; they stay queued", "err", sendErr, "queued", r.Stats().Queued)
				failing = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if failing {
			r.log.Info("fleet: sending auto-block reports again")
			failing = false
		}
		backoff = minBackoff
	}
}

// msgID names a report for the stream's deduplication: the same report
// sent again (its ack lost) has the same id; a merged one does not.
func (r *Reporter) msgID(e entry) string {
	until := "0"
	if !e.until.IsZero() {
		until = strconv.FormatInt(e.until.UnixNano(), 10)
	}
	return strings.Join([]string{r.o.Name, e.prefix.String(), strconv.FormatInt(e.at.UnixNano(), 10), until}, "|")
}

// pending copies the oldest queued reports, and says whether the
// reporter was closed.
func (r *Reporter) pending() ([]entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.q.f == nil {
		return nil, true
	}
	var out []entry
	for el := r.q.order.Front(); el != nil && len(out) < sendBatch; el = el.Next() {
		out = append(out, *el.Value.(*entry))
	}
	return out, false
}

// sent removes e from the queue unless it was merged meanwhile (then the
// newer version is sent next).
func (r *Reporter) sent(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Sent++
	el, ok := r.q.byID[e.id]
	if !ok || el.Value.(*entry).version != e.version || r.q.f == nil {
		return
	}
	r.q.remove(e.id)
	if err := r.q.appendLines(false, line{Done: e.id}); err != nil {
		r.log.Warn("report queue", "err", err)
		return
	}
	if r.q.compactable() {
		if err := r.q.rewrite(); err != nil {
			r.log.Warn("report queue", "err", err)
		}
	}
}
