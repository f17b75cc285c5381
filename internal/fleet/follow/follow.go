package follow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
)

// Options configure a Follower.
type Options struct {
	// Conn is the edge's connection to the hub (fleet.servers,
	// credentials, TLS); the caller closes it after Run returns.
	Conn     *nats.Conn
	Verifier *change.Verifier
	State    State
	Applier  Applier
	// Now is the clock records are checked against; time.Now when nil.
	Now func() time.Time
	// MaxBatch bounds the changes handed to one Apply; 4096 when 0.
	// MaxBatchBytes bounds the records' bytes read into one batch; 16 MiB
	// when 0 (a batch of the largest records would hold 256 MiB).
	MaxBatch      int
	MaxBatchBytes int
	// Recheck is how often the follower re-reads the stream's identity
	// and compaction watermark while connected (fleet.reconcile_interval);
	// 30 s when 0. A reconnect always re-reads them.
	Recheck time.Duration
	// Retry is the pause before a failed session starts again; 1 s when 0.
	Retry time.Duration
	// MaxModule bounds a function module fetched from the hub; 64 MiB when 0.
	MaxModule int64
	// FetchTimeout bounds a module's fetch, with a second more per MiB;
	// 10 s when 0.
	FetchTimeout time.Duration
	// Name, if set, is this edge's name (fleet.name): it reports its
	// cursor and counters under it in the hub's edges bucket, soon after
	// every applied batch and every ReportEvery (10 s when 0).
	Name        string
	ReportEvery time.Duration
	// OnRefused, if set, is called for every refused record (metrics,
	// aggregated audit). err is a *change.Refusal.
	OnRefused func(key string, err error)
	Logger    *slog.Logger
}

// Status is a follower's view of itself, for `aegis fleet status`.
type Status struct {
	Connected bool   `json:"connected"`
	Cursor    Cursor `json:"cursor"`
	// CaughtUp is true once the session's initial catch-up or reconcile
	// has been applied.
	CaughtUp bool              `json:"caught_up"`
	Applied  uint64            `json:"applied"`
	Ignored  uint64            `json:"ignored"` // replays, older changes, unsigned deletes
	Refused  map[string]uint64 `json:"refused,omitempty"`
	// RecentRefusals are the last refused records, with their revisions:
	// `--wait` tells a refused change from one not yet applied.
	RecentRefusals []hub.Refusal `json:"recent_refusals,omitempty"`
	FullReconciles uint64        `json:"full_reconciles"`
	LastApplied    time.Time     `json:"last_applied,omitzero"`
	LastError      string        `json:"last_error,omitempty"`
}

// Follower follows the hub's bucket and applies verified changes.
type Follower struct {
	o   Options
	log *slog.Logger

	// forceFull makes sessions reconcile fully whatever the cursor says,
	// until one completes (only the Run goroutine uses it). The cursor
	// carries the same need across a restart (Cursor.Full).
	forceFull string
	// looks counts periodic reads of the stream (tests wait on it);
	// fetches counts module fetches begun.
	looks, fetches atomic.Uint64
	// fnRetry holds the functions whose module could not be fetched, to
	// be tried again (only the Run goroutine uses it).
	fnRetry map[string]*fnRetry

	mu sync.Mutex
	st Status
	// applying maps the keys of the batch being applied to their
	// revisions, for the applier's refusals (NoteRefused).
	applying map[string]uint64
}

// maxRecentRefusals bounds Status.RecentRefusals.
const maxRecentRefusals = 32

// New checks opts and returns a Follower; Run starts it.
func New(opts Options) (*Follower, error) {
	if opts.Conn == nil || opts.Verifier == nil || opts.State == nil || opts.Applier == nil {
		return nil, errors.New("follow: Conn, Verifier, State and Applier are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 16 << 20
	}
	if opts.Recheck <= 0 {
		opts.Recheck = 30 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = 10 * time.Second
	}
	if opts.Name != "" {
		if err := hub.ValidEdgeName(opts.Name); err != nil {
			return nil, err
		}
	}
	if opts.MaxModule <= 0 {
		opts.MaxModule = 64 << 20
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Follower{o: opts, log: log, st: Status{Refused: map[string]uint64{}}, fnRetry: map[string]*fnRetry{}}, nil
}

// Status returns a snapshot of the follower's state.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.st
	s.Refused = maps.Clone(f.st.Refused)
	s.RecentRefusals = slices.Clone(f.st.RecentRefusals)
	s.Connected = f.o.Conn.IsConnected()
	return s
}

// reportGap is the least time between two reports of an edge that keeps
// applying changes.
const reportGap = 200 * time.Millisecond

// errRestart ends a session so the next one re-reads the stream.
var errRestart = errors.New("stream changed or reconnected")

// Run follows the hub until ctx is done. Each session reads the stream's
// identity and watermark, then either resumes after the saved cursor or
// reconciles fully; a session ends on any error, a reconnect or a changed
// stream, and the next starts after Options.Retry. The edge keeps
// enforcing what it has throughout: Run only ever adds to it.
func (f *Follower) Run(ctx context.Context) error {
	for {
		err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		f.mu.Lock()
		f.st.CaughtUp = false
		if err != nil && !errors.Is(err, errRestart) {
			f.st.LastError = err.Error()
		}
		f.mu.Unlock()
		if errors.Is(err, errRestart) {
			f.log.Info("fleet: restarting the follow session", "why", err)
			continue
		}
		f.log.Warn("fleet: follow session ended", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.o.Retry):
		}
	}
}

// streamView is what a session learns about the stream at its start.
type streamView struct {
	epoch     string
	lastSeq   uint64
	watermark uint64
}

func (f *Follower) view(ctx context.Context, js jetstream.JetStream) (streamView, error) {
	st, err := js.Stream(ctx, hub.Stream)
	if err != nil {
		return streamView{}, fmt.Errorf("opening stream %s: %w", hub.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return streamView{}, fmt.Errorf("reading stream %s: %w", hub.Stream, err)
	}
	v := streamView{epoch: strconv.FormatInt(info.Created.UnixNano(), 10), lastSeq: info.State.LastSeq}
	if w, ok := info.Config.Metadata[hub.MetaCompacted]; ok {
		v.watermark, _ = strconv.ParseUint(w, 10, 64)
	}
	return v, nil
}

// needsFull reports whether resuming after cur could miss something.
func needsFull(cur Cursor, v streamView) (bool, string) {
	switch {
	case cur.Epoch == "":
		return true, "first start"
	case cur.Epoch != v.epoch:
		return true, "bucket recreated"
	case cur.Seq > v.lastSeq:
		return true, "the hub is behind the edge"
	case cur.Seq < v.watermark:
		return true, "tombstones the edge has not seen were removed"
	case cur.Forms < change.RecordForms:
		return true, "an older build passed over records in a form it could not read"
	case cur.Full != "":
		return true, cur.Full
	}
	return false, ""
}

// missedCompaction reports whether tombstones removed since the last
// look could have been ones the edge had not read yet: the watermark
// rose, and at the last look (before the hub raised it, and so before it
// removed them) the edge's cursor was below the new watermark. A caught-up
// edge is far beyond the old tombstones compaction removes.
func missedCompaction(prevCursor, prevWatermark, watermark uint64) bool {
	return watermark > prevWatermark && prevCursor < watermark
}

func (f *Follower) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	js, err := jetstream.New(f.o.Conn)
	if err != nil {
		return err
	}
	reconnects := f.o.Conn.Stats().Reconnects
	view, err := f.view(ctx, js)
	if err != nil {
		return err
	}
	cur, err := f.o.State.Cursor()
	if err != nil {
		return fmt.Errorf("reading the fleet cursor: %w", err)
	}
	full, why := needsFull(cur, view)
	if !full && f.forceFull != "" {
		full, why = true, f.forceFull
	}
	kv, err := js.KeyValue(ctx, hub.Bucket)
	if err != nil {
		return fmt.Errorf("opening bucket %s: %w", hub.Bucket, err)
	}
	modules, err := js.ObjectStore(ctx, hub.ModuleBucket)
	if err != nil {
		return fmt.Errorf("opening object store %s: %w", hub.ModuleBucket, err)
	}
	var w jetstream.KeyWatcher
	if full {
		f.log.Info("fleet: full reconcile", "why", why, "cursor", cur.Seq, "hub_last", view.lastSeq, "watermark", view.watermark)
		w, err = kv.WatchAll(ctx)
	} else {
		w, err = kv.WatchAll(ctx, jetstream.ResumeFromRevision(cur.Seq+1))
	}
	if err != nil {
		return fmt.Errorf("watching bucket %s: %w", hub.Bucket, err)
	}
	defer w.Stop()

	var edges jetstream.KeyValue
	if f.o.Name != "" {
		if edges, err = js.KeyValue(ctx, hub.EdgesBucket); err != nil {
			f.log.Warn("fleet: cannot report to the hub", "bucket", hub.EdgesBucket, "err", err)
			edges = nil
		}
	}
	var lastReport time.Time
	var reportedSeq uint64
	report := func(force bool) {
		st := f.Status()
		if edges == nil || (!force && st.Cursor.Seq == reportedSeq && time.Since(lastReport) < f.o.ReportEvery) {
			return
		}
		if !force && time.Since(lastReport) < reportGap {
			return // soon: the next tick
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := hub.Report(rctx, edges, hub.EdgeReport{Name: f.o.Name, Epoch: st.Cursor.Epoch, Seq: st.Cursor.Seq,
			CaughtUp: st.CaughtUp, Applied: st.Applied, Ignored: st.Ignored, Refused: st.Refused, RecentRefusals: st.RecentRefusals,
			FullReconciles: st.FullReconciles, LastApplied: st.LastApplied, Reported: time.Now()})
		if err != nil {
			f.log.Debug("fleet: reporting to the hub", "err", err)
			return
		}
		lastReport, reportedSeq = time.Now(), st.Cursor.Seq
	}

	s := &run{f: f, ctx: ctx, modules: modules, epoch: view.epoch, full: full}
	if full {
		s.seen = map[string]bool{}
		// Every revision up to lastSeq is reflected in the snapshot: a
		// revision missing from it was superseded by one in it.
		s.floor = view.lastSeq
	}
	tick := time.NewTicker(min(f.o.Recheck, reportGap))
	defer tick.Stop()
	wait := time.NewTimer(backlogGap)
	defer wait.Stop()
	lastView, lastCur, lastWM := time.Now(), cur, view.watermark
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e == nil {
				if err := s.caughtUp(); err != nil {
					return err
				}
				if err := s.retryFunctions(kv, true); err != nil {
					return err
				}
				report(true)
				continue
			}
			batch := []jetstream.KeyValueEntry{e}
			for size := len(e.Value()); len(batch) < f.o.MaxBatch && size < f.o.MaxBatchBytes; size += len(e.Value()) {
				// Take what is ready. Once a backlog shows (a burst such as
				// an import), the watch refills its small buffer as fast as
				// it is read: wait a moment for more, so the burst is
				// applied in fewer, larger batches, each one audit record,
				// one transaction and one kernel sync. A lone change never
				// waits.
				var got, ok bool
				if len(batch) < backlogFrom {
					select {
					case e, ok = <-w.Updates():
						got = true
					default:
					}
				} else {
					wait.Reset(backlogGap)
					select {
					case e, ok = <-w.Updates():
						got = true
					case <-wait.C:
					}
				}
				if !got || !ok {
					break
				}
				if e == nil {
					// The marker: apply what came before it, then finish.
					if err := s.process(batch); err != nil {
						return err
					}
					batch = nil
					if err := s.caughtUp(); err != nil {
						return err
					}
					if err := s.retryFunctions(kv, true); err != nil {
						return err
					}
					break
				}
				batch = append(batch, e)
			}
			if err := s.process(batch); err != nil {
				return err
			}
			report(false)
		case <-tick.C:
			report(false)
			if n := f.o.Conn.Stats().Reconnects; n != reconnects {
				return fmt.Errorf("%w: reconnected to the hub", errRestart)
			}
			if time.Since(lastView) < f.o.Recheck {
				continue
			}
			lastView = time.Now()
			v, err := f.view(ctx, js)
			if err != nil {
				return err
			}
			cur, err := f.o.State.Cursor()
			if err != nil {
				return err
			}
			if !s.full {
				if again, why := needsFull(cur, v); again {
					return fmt.Errorf("%w: %s", errRestart, why)
				}
				if missedCompaction(lastCur.Seq, lastWM, v.watermark) {
					// Kept in memory and in the cursor until a full
					// reconcile completes: one cut short is done again,
					// after an error or a crash alike.
					f.forceFull = "tombstones were removed while the edge was behind them"
					cur.Full = f.forceFull
					if err := s.apply(nil, cur, 0); err != nil {
						return err
					}
					return fmt.Errorf("%w: %s", errRestart, f.forceFull)
				}
			} else if v.epoch != s.epoch {
				return fmt.Errorf("%w: bucket recreated during reconcile", errRestart)
			}
			lastCur, lastWM = cur, v.watermark
			if !s.full {
				if err := s.retryFunctions(kv, false); err != nil {
					return err
				}
			}
			f.looks.Add(1)
		}
	}
}

// run is one session's progress.
type run struct {
	f       *Follower
	ctx     context.Context
	modules jetstream.ObjectStore
	epoch   string
	// full is set while the initial snapshot of a full reconcile comes in;
	// seen holds the keys the hub has, floor the hub's last revision at
	// the start.
	full  bool
	seen  map[string]bool
	floor uint64
	// seq is the highest revision processed this session.
	seq uint64
	// retrying is set while retryFunctions processes records the edge
	// may hold already: they are not counted as ignored, a batch that
	// applies nothing commits nothing, refusals already counted are not
	// counted again, and fetches is how many modules it may still fetch
	// (each may take FetchTimeout: the session waits meanwhile).
	retrying bool
	fetches  int
}

// A batch that reaches backlogFrom entries is a backlog: the follower
// then waits up to backlogGap for each further entry, up to MaxBatch.
const (
	backlogFrom = 128
	backlogGap  = time.Millisecond
)

// parallelFrom is the batch size from which records are verified on
// several cores (a signature verification costs tens of microseconds),
// and the run of consecutive records a core takes at a time.
const parallelFrom = 64

// verifyAll decodes and checks the records among entries (not the KV
// markers), on up to GOMAXPROCS goroutines for a large batch, each taking
// runs of consecutive entries with a session of its own (records of one
// batch in order share most of their proofs). changes[i] is entries[i]'s
// change if errs[i] is nil (a *change.Refusal otherwise); a marker's is
// the zero Change.
func verifyAll(v *change.Verifier, entries []jetstream.KeyValueEntry, now time.Time) (changes []change.Change, errs []error) {
	changes, errs = make([]change.Change, len(entries)), make([]error, len(entries))
	one := func(s *change.Session, i int) {
		e := entries[i]
		if e.Operation() != jetstream.KeyValuePut {
			return
		}
		// These are the only places bus bytes are parsed. A record that
		// made them panic is refused as malformed instead of taking the
		// node (and its enforcement upkeep) down with it.
		defer func() {
			if r := recover(); r != nil {
				changes[i], errs[i] = change.Change{}, change.Refuse(change.ReasonMalformed, "decoding panicked: %v", r)
			}
		}()
		env, err := change.Decode(e.Value())
		if err != nil {
			errs[i] = &change.Refusal{Reason: change.ReasonMalformed, Err: err}
			return
		}
		env.StoredKey = e.Key()
		changes[i], errs[i] = s.Check(env, now)
	}
	workers := min(runtime.GOMAXPROCS(0), len(entries)/parallelFrom+1)
	if workers <= 1 {
		s := v.Session()
		for i := range entries {
			one(s, i)
		}
		return changes, errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			s := v.Session()
			for {
				from := int(next.Add(parallelFrom) - parallelFrom)
				if from >= len(entries) {
					return
				}
				for i := from; i < min(from+parallelFrom, len(entries)); i++ {
					one(s, i)
				}
			}
		})
	}
	wg.Wait()
	return changes, errs
}

// process verifies and orders entries and applies what is new. During a
// full reconcile the cursor is not moved until the snapshot is complete,
// so a reconcile cut short is done again.
func (s *run) process(entries []jetstream.KeyValueEntry) error {
	if len(entries) == 0 {
		return nil
	}
	f := s.f
	now := f.o.Now()
	changes, errs := verifyAll(f.o.Verifier, entries, now)
	// What is applied is collected at the front of changes: out[k] is
	// written only after changes[i], i >= k, was read.
	out := changes[:0]
	index := make(map[string]int, len(entries))
	revs := make(map[string]uint64, len(entries))
	var ignored uint64
	// What was applied before, for every verified record, in one read.
	keys := make([]string, 0, len(entries))
	for i, e := range entries {
		if e.Operation() == jetstream.KeyValuePut && change.Authentic(errs[i]) {
			keys = append(keys, changes[i].Key)
		}
	}
	prevs, found, err := f.o.State.Applied(keys)
	if err != nil {
		return fmt.Errorf("reading fleet state: %w", err)
	}
	next := 0 // the next of keys
	for i, e := range entries {
		if !s.retrying {
			// A retried record is read out of order: the watch has yet to
			// bring the revisions before it.
			s.seq = max(s.seq, e.Revision())
		}
		if e.Operation() != jetstream.KeyValuePut {
			// An unsigned KV delete or purge: not a change. Only signed
			// tombstones delete.
			ignored++
			continue
		}
		c, err := changes[i], errs[i]
		if err != nil && s.retrying {
			delete(f.fnRetry, e.Key()) // no fetch will mend this one
		}
		if s.full && change.Authentic(err) {
			// What the hub holds under the key, refused or not: a
			// record nobody trusted signed does not keep an entry alive.
			s.seen[e.Key()] = true
		}
		if !change.Authentic(err) {
			s.refuse(e.Key(), e.Revision(), err)
			continue
		}
		prev, ok := prevs[next], found[next]
		next++
		j, inBatch := index[c.Key]
		// A replay or an older change is a no-op, whatever Check said of
		// its content: an old record replayed from the bus, since
		// expired or now over a management address, is neither counted
		// nor audited.
		if inBatch && !change.Newer(c, out[j]) {
			ignored++
			continue
		}
		if ok && c.IssuedAt <= prev.IssuedAt {
			ignored++
			continue
		}
		if err != nil {
			s.refuse(e.Key(), e.Revision(), err)
			if !expiredPut(c, err) {
				continue
			}
			// An expired put is still the newest record of its key: an
			// edge that missed its life ends where the others' expiry
			// left them, with no entry, instead of keeping an older one.
			c.Op, c.ExpiresAt = change.OpDelete, 0
		}
		// Newest-wins alone would let the controller key shorten an
		// operator's block and so lift it: its role is to add blocks. The
		// operator's entry may be held, or earlier in this batch.
		if c.ByController && (inBatch && operatorHolds(out[j].Op == change.OpDelete, out[j].ByController, out[j].ExpiresAt, now) ||
			!inBatch && ok && operatorHolds(prev.Deleted, prev.ByController, prev.ExpiresAt, now)) {
			s.refuse(e.Key(), e.Revision(), change.Refuse(change.ReasonRole, "the controller key may not replace an operator's live entry %s", c.Key))
			continue
		}
		if c.Kind == change.KindFunction && c.Op == change.OpPut {
			if s.retrying {
				if s.fetches == 0 {
					f.retryLater(c.Key, e.Revision(), 0) // the next round's
					continue
				}
				s.fetches--
			}
			again, err := s.fetchModule(&c)
			if err != nil {
				if change.ReasonOf(err) == "" {
					return err // the session ended or the hub is unreachable
				}
				counted := f.fnRetry[c.Key] != nil && f.fnRetry[c.Key].rev == e.Revision()
				if again {
					f.retryLater(c.Key, e.Revision(), f.o.Recheck)
				}
				if !counted {
					s.refuse(e.Key(), e.Revision(), err)
				}
				continue
			}
			delete(f.fnRetry, c.Key)
		}
		revs[c.Key] = e.Revision()
		if inBatch {
			out[j] = c // supersedes an older change for the key in this batch
			ignored++
			continue
		}
		index[c.Key] = len(out)
		out = append(out, c)
	}
	if s.retrying {
		if len(out) == 0 {
			return nil
		}
		ignored = 0
	}
	cur := Cursor{Epoch: s.epoch, Seq: s.seq, Forms: change.RecordForms}
	if s.full || s.retrying {
		old, err := f.o.State.Cursor()
		if err != nil {
			return err
		}
		cur = old
	}
	s.f.mu.Lock()
	s.f.applying = revs
	s.f.mu.Unlock()
	defer func() {
		s.f.mu.Lock()
		s.f.applying = nil
		s.f.mu.Unlock()
	}()
	return s.apply(out, cur, ignored)
}

// expiredPut reports whether Check refused c only for having expired, a
// put: it still supersedes the records of its key before it.
func expiredPut(c change.Change, err error) bool {
	return change.ReasonOf(err) == change.ReasonExpired && c.Op == change.OpPut
}

// operatorHolds reports whether a key's entry is an operator's, live at now.
func operatorHolds(deleted, byController bool, expiresAt int64, now time.Time) bool {
	return !deleted && !byController && (expiresAt == 0 || expiresAt > now.UnixNano())
}

func (s *run) apply(changes []change.Change, cur Cursor, ignored uint64) error {
	f := s.f
	if c, ok := f.o.Applier.(Committer); ok && len(changes) > 0 {
		if err := c.ApplyCommit(s.ctx, changes, cur); err != nil {
			return fmt.Errorf("applying %d fleet changes: %w", len(changes), err)
		}
	} else {
		if len(changes) > 0 {
			if err := f.o.Applier.Apply(s.ctx, changes); err != nil {
				return fmt.Errorf("applying %d fleet changes: %w", len(changes), err)
			}
		}
		if err := f.o.State.Commit(changes, cur); err != nil {
			return fmt.Errorf("saving fleet state: %w", err)
		}
	}
	f.mu.Lock()
	f.st.Cursor = cur
	f.st.Applied += uint64(len(changes))
	f.st.Ignored += ignored
	if len(changes) > 0 {
		f.st.LastApplied = f.o.Now()
	}
	f.mu.Unlock()
	return nil
}

// caughtUp ends the initial part of a session. After a full reconcile's
// snapshot it deletes what the edge holds and the hub no longer does,
// then saves the cursor.
func (s *run) caughtUp() error {
	f := s.f
	if s.full {
		live, err := f.o.State.Live()
		if err != nil {
			return fmt.Errorf("reading fleet state: %w", err)
		}
		var gone []change.Change
		for key, issued := range live {
			if s.seen[key] {
				continue
			}
			c, err := change.ParseKey(key)
			if err != nil {
				f.log.Warn("fleet: unparsable key in the edge's state", "key", key, "err", err)
				continue
			}
			c.Op, c.IssuedAt, c.Reconciled = change.OpDelete, issued, true
			gone = append(gone, c)
		}
		for len(gone) > 0 {
			n := min(len(gone), f.o.MaxBatch)
			old, err := f.o.State.Cursor()
			if err != nil {
				return err
			}
			if err := s.apply(gone[:n], old, 0); err != nil {
				return err
			}
			gone = gone[n:]
		}
		cur := Cursor{Epoch: s.epoch, Seq: max(s.seq, s.floor), Forms: change.RecordForms}
		if err := s.apply(nil, cur, 0); err != nil {
			return err
		}
		s.full, s.seen, f.forceFull = false, nil, ""
		f.mu.Lock()
		f.st.FullReconciles++
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.st.CaughtUp = true
	f.mu.Unlock()
	return nil
}

func (s *run) refuse(key string, rev uint64, err error) {
	f := s.f
	if s.retrying && f.fnRetry[key] == nil {
		// Read again only for its module: counted when the watch
		// brought it, unless a fetch of it failed for the first time.
		return
	}
	reason := change.ReasonOf(err)
	f.mu.Lock()
	f.noteLocked(key, rev, reason)
	f.mu.Unlock()
	f.log.Debug("fleet: refused a change", "key", key, "reason", reason, "err", err)
	if f.o.OnRefused != nil {
		f.o.OnRefused(key, err)
	}
}

func (f *Follower) noteLocked(key string, rev uint64, reason string) {
	f.st.Refused[reason]++
	r := append(f.st.RecentRefusals, hub.Refusal{Key: key, Rev: rev, Reason: reason})
	f.st.RecentRefusals = r[max(0, len(r)-maxRecentRefusals):]
}

// NoteRefused counts a change of the batch being applied that the
// applier refused (a full list, a rule of the node's): the follower
// moves past it all the same, and reports it with its revision.
func (f *Follower) NoteRefused(key, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noteLocked(key, f.applying[key], reason)
}

// fetchModule gets a function's module from the object store and checks
// it against the signed digest and size: the store's own digest, size and
// chunks are the bus's word, not the signer's. It reads at most the signed
// size (and one byte more, to see a longer object), within a deadline.
// Whatever the bus holds instead of the module (no object, bad meta, a
// link, missing or extra chunks, a stall) is a refusal, and the function
// is fetched again later (retryFunctions); only the end of the session or
// a lost connection ends processing, to be retried by the next session.
//
// again reports a refusal the hub may mend (the module not there or not
// whole yet), as opposed to one over the limit.
func (s *run) fetchModule(c *change.Change) (again bool, err error) {
	refuse := func(format string, args ...any) (bool, error) {
		return true, change.Refuse(change.ReasonDigest, "module %s of %s: "+format, append([]any{c.Func.Digest, c.Func.Name}, args...)...)
	}
	if c.Func.Size > s.f.o.MaxModule {
		return false, change.Refuse(change.ReasonDigest, "module of %s is %d bytes, limit %d", c.Func.Name, c.Func.Size, s.f.o.MaxModule)
	}
	s.f.fetches.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.f.o.FetchTimeout+time.Duration(c.Func.Size>>20)*time.Second)
	defer cancel()
	failed := func(err error) (bool, error) {
		if s.ctx.Err() != nil || !s.f.o.Conn.IsConnected() {
			return false, fmt.Errorf("fetching module %s: %w", c.Func.Digest, err)
		}
		return refuse("%v", err)
	}
	info, err := s.modules.GetInfo(ctx, c.Func.Digest)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return refuse("not in the hub's store")
	case err != nil:
		return failed(err)
	case info.Opts != nil && info.Opts.Link != nil:
		return refuse("the store holds a link")
	case int64(info.Size) != c.Func.Size:
		return refuse("%d bytes, signed %d", info.Size, c.Func.Size)
	}
	r, err := s.modules.Get(ctx, c.Func.Digest)
	if err != nil {
		return failed(err)
	}
	defer r.Close()
	module, err := io.ReadAll(io.LimitReader(r, c.Func.Size+1))
	if err != nil {
		return failed(err)
	}
	sum := sha256.Sum256(module)
	if hex.EncodeToString(sum[:]) != c.Func.Digest || int64(len(module)) != c.Func.Size {
		return refuse("does not match its signed digest and size")
	}
	c.Module = module
	return false, nil
}

// fnRetry is a function to fetch again: its record's revision, and when,
// each failure doubling the wait up to maxRetryWait.
type fnRetry struct {
	rev  uint64
	next time.Time
	wait time.Duration
}

const maxRetryWait = 15 * time.Minute

// retryLater schedules key's record rev to be fetched again after wait
// (or the doubled wait of a record that failed before).
func (f *Follower) retryLater(key string, rev uint64, wait time.Duration) {
	r := f.fnRetry[key]
	switch {
	case r == nil || r.rev != rev:
		r = &fnRetry{rev: rev, wait: wait}
		f.fnRetry[key] = r
	case wait > 0:
		r.wait = min(max(2*r.wait, wait), maxRetryWait)
	}
	r.next = f.o.Now().Add(r.wait)
}

// retryFunctions processes again the hub's records of the functions
// whose module could not be fetched and whose wait is over, or with all
// set every function's but those still waiting: the record is only
// skipped if the edge holds it already (the ordering rules), so a function
// refused for its module, before this session or a restart, is deployed
// once the hub holds it whole. A round fetches at most one module; the
// others wait for the next. Nothing is counted or committed for records it
// holds already, nor a refusal counted again.
func (s *run) retryFunctions(kv jetstream.KeyValue, all bool) error {
	f := s.f
	now := f.o.Now()
	due := func(k string) bool { r := f.fnRetry[k]; return r == nil || !r.next.After(now) }
	var keys []string
	if all {
		lister, err := kv.ListKeysFiltered(s.ctx, "fn.>")
		if err != nil {
			return fmt.Errorf("listing functions: %w", err)
		}
		for k := range lister.Keys() {
			if due(k) {
				keys = append(keys, k)
			}
		}
	} else {
		for k := range f.fnRetry {
			if due(k) {
				keys = append(keys, k)
			}
		}
	}
	var entries []jetstream.KeyValueEntry
	for _, k := range keys {
		e, err := kv.Get(s.ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			delete(f.fnRetry, k)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", k, err)
		}
		if r := f.fnRetry[k]; r != nil && r.rev != e.Revision() {
			delete(f.fnRetry, k) // superseded: the watch brings the newer record
			continue
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil
	}
	s.retrying, s.fetches = true, 1
	defer func() { s.retrying = false }()
	return s.process(entries)
}
