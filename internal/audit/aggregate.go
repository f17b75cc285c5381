package audit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Appender is what records events; *Log implements it.
type Appender interface {
	Append(context.Context, Event) (Record, error)
}

// DefaultMaxSources bounds how many sources an Aggregator tracks per
// period when NewAggregator is given 0.
const DefaultMaxSources = 4096

// OverflowSource is the target of the record that sums up the sources an
// Aggregator could not track individually in one period.
const OverflowSource = "other"

// Aggregator turns a stream of events of one operation (automatic blocks)
// into at most one record per source per period, so a flood of events
// cannot flood the log. Add is cheap and never blocks on the disk; Flush
// writes the records. Sources beyond the per-period bound are summed into
// one record with target OverflowSource.
type Aggregator struct {
	log        Appender
	op, result string
	maxSources int

	mu      sync.Mutex
	pending map[string]*tally
	order   []string // sources in order of first event
}

type tally struct {
	events      uint64
	packets     uint64
	first, last time.Time
}

// AggregateDetails are the details of an aggregated record.
type AggregateDetails struct {
	Events  uint64    `json:"events"`
	Packets uint64    `json:"packets"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

// NewAggregator returns an aggregator writing records of op to log. A
// maxSources of 0 means DefaultMaxSources.
func NewAggregator(log Appender, op string, maxSources int) *Aggregator {
	if maxSources <= 0 {
		maxSources = DefaultMaxSources
	}
	return &Aggregator{log: log, op: op, result: ResultOK, maxSources: maxSources, pending: make(map[string]*tally)}
}

// RecordAs makes the records' result r (ResultRefused for refusals) and
// returns a.
func (a *Aggregator) RecordAs(r string) *Aggregator {
	a.result = r
	return a
}

// Add counts one event from source (a prefix, say) that carried packets,
// seen at t.
func (a *Aggregator) Add(source string, packets uint64, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	tl, ok := a.pending[source]
	if !ok {
		if len(a.pending) >= a.maxSources {
			source = OverflowSource
			tl, ok = a.pending[source]
		}
		if !ok {
			tl = &tally{first: t}
			a.pending[source] = tl
			a.order = append(a.order, source)
		}
	}
	tl.events++
	tl.packets += packets
	if t.Before(tl.first) {
		tl.first = t
	}
	if t.After(tl.last) {
		tl.last = t
	}
}

// Flush writes one record per source seen since the last Flush. Sources
// whose record could not be written are kept and retried by the next
// Flush.
func (a *Aggregator) Flush(ctx context.Context) error {
	a.mu.Lock()
	pending, order := a.pending, a.order
	a.pending, a.order = make(map[string]*tally), nil
	a.mu.Unlock()

	var errs []error
	for i, src := range order {
		tl := pending[src]
		_, err := a.log.Append(ctx, Event{
			Op: a.op, Target: src, Actor: SystemActor, Result: a.result,
			Details: AggregateDetails{Events: tl.events, Packets: tl.packets, First: tl.first.UTC(), Last: tl.last.UTC()},
		})
		if err != nil {
			errs = append(errs, err)
			a.requeue(order[i:], pending)
			break
		}
	}
	return errors.Join(errs...)
}

// requeue merges unwritten tallies back into the pending set.
func (a *Aggregator) requeue(order []string, pending map[string]*tally) {
	a.mu.Lock()
	defer a.mu.Unlock()
	newer := a.order
	a.order = slices.Clone(order)
	for _, src := range newer {
		if _, ok := pending[src]; !ok {
			a.order = append(a.order, src)
		}
	}
	for _, src := range order {
		old := pending[src]
		if cur, ok := a.pending[src]; ok {
			cur.events += old.events
			cur.packets += old.packets
			cur.first = minTime(cur.first, old.first)
			cur.last = maxTime(cur.last, old.last)
			continue
		}
		a.pending[src] = old
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Run flushes every period until ctx ends, then flushes once more. Flush
// errors go to report (which may be nil).
func (a *Aggregator) Run(ctx context.Context, period time.Duration, report func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := a.Flush(context.Background()); err != nil && report != nil {
				report(err)
			}
			return
		case <-t.C:
			if err := a.Flush(ctx); err != nil && report != nil {
				report(err)
			}
		}
	}
}
