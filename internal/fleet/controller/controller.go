package controller

import (
	"container/list"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/fleet/report"
	"github.com/aegis-edge/aegis/internal/keyfile"
)

// DefaultMaxSources is how many sources the controller tracks when
// Options.MaxSources is 0.
const DefaultMaxSources = 100_000

// Reasons a report or a promotion is ignored: the values of Stats.Ignored
// and of a metric's label.
const (
	IgnoredMalformed    = "malformed"     // the report does not parse
	IgnoredEdgeMismatch = "edge_mismatch" // the payload names another edge than the subject
	IgnoredTooBroad     = "too_broad"     // broader than /24 IPv4 or /48 IPv6
	IgnoredStale        = "stale"         // older than the window on arrival, or already expired
	IgnoredOperator     = "operator"      // an operator's record for the key stands
	IgnoredEdgeQuota    = "edge_quota"    // the edge alone reports too many sources already
)

// IgnoredReasons are all the reasons, for registering counter labels.
var IgnoredReasons = []string{IgnoredMalformed, IgnoredEdgeMismatch, IgnoredTooBroad, IgnoredStale, IgnoredOperator, IgnoredEdgeQuota}

// Options configure the controller (hub.auto_block.*).
type Options struct {
	// Conn is the hub's connection, allowed to read the reports stream
	// and write the change bucket.
	Conn *nats.Conn
	// Key is the controller's private key; edges trust its public half as
	// fleet.controller_key.
	Key ed25519.PrivateKey
	// Operators are the operators' public keys (hub.operator_keys). When
	// set, a record held under a key counts as an operator's decision only
	// if one of them signed it (and as the controller's own only if its
	// key did): a record signed by any other key, or forged, is replaced.
	// When empty, held records are weighed unverified.
	Operators []ed25519.PublicKey
	// MinEdges distinct edges must report a source within Window.
	MinEdges int
	Window   time.Duration
	// TTL is a promotion's lifetime, at most MaxTTL
	// (change.DefaultMaxTTL when 0), which edges also bound.
	TTL, MaxTTL time.Duration
	// MaxSources bounds the sources tracked; DefaultMaxSources when 0.
	MaxSources int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives promotions and failures; none when nil.
	Logger *slog.Logger
}

// Stats are the controller's counters.
type Stats struct {
	// Reports is how many reports it has handled.
	Reports uint64
	// Promotions is how many blocks it published (new or extended).
	Promotions uint64
	// Ignored counts ignored reports and withheld promotions by reason.
	Ignored map[string]uint64
	// Errors counts promotions that failed to publish (retried on a later
	// report).
	Errors uint64
	// Sources is how many sources it tracks now; Evicted how many it
	// dropped to stay within MaxSources.
	Sources int
	Evicted uint64
}

// Controller promotes sources reported by enough edges to fleet blocks.
type Controller struct {
	o     Options
	log   *slog.Logger
	keyID string
	trust *change.Verifier // nil: held records are read unverified

	// Touched only by Run's goroutine.
	sources map[netip.Prefix]*source
	lru     *list.List // of *source, most recently reported first
	// alone counts, per edge, the sources only that edge reports: one
	// edge may hold at most a share of the table (loneShare), so its
	// reports cannot push out what other edges report before a second
	// edge confirms it.
	alone map[string]int
	pub   *hub.Publisher

	mu    sync.Mutex
	stats Stats
}

// source is one reported prefix.
type source struct {
	prefix netip.Prefix
	edges  map[string]time.Time // each edge's latest report in the window
	lone   string               // the edge, when only one reports it
	last   time.Time
	// hold: no promotion is tried before it (the last look found a live
	// promotion or an operator's record).
	hold time.Time
	el   *list.Element
}

// New checks o and returns a controller; Run runs it.
func New(o Options) (*Controller, error) {
	if o.Conn == nil {
		return nil, errors.New("controller: no hub connection")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("controller: the controller key is not an ed25519 private key")
	}
	pub := o.Key.Public().(ed25519.PublicKey)
	if o.MaxTTL <= 0 {
		o.MaxTTL = change.DefaultMaxTTL
	}
	switch {
	case o.MinEdges < 1:
		return nil, errors.New("controller: min_edges must be at least 1")
	case o.Window <= 0:
		return nil, errors.New("controller: window must be positive")
	case o.TTL <= 0 || o.TTL > o.MaxTTL:
		return nil, fmt.Errorf("controller: ttl %s must be positive and at most max_ttl %s", o.TTL, o.MaxTTL)
	}
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var trust *change.Verifier
	if len(o.Operators) > 0 {
		v, err := change.NewVerifier(change.Policy{Operators: o.Operators, Controller: pub, MaxTTL: o.MaxTTL})
		if err != nil {
			return nil, fmt.Errorf("controller: operator keys: %w", err)
		}
		trust = v
	}
	return &Controller{o: o, log: log, keyID: keyfile.KeyID(pub), trust: trust,
		sources: map[netip.Prefix]*source{}, lru: list.New(), alone: map[string]int{},
		stats: Stats{Ignored: map[string]uint64{}}}, nil
}

// Run is New followed by Controller.Run.
func Run(ctx context.Context, o Options) error {
	c, err := New(o)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// Stats returns a copy of the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Ignored = maps.Clone(c.stats.Ignored)
	return s
}

func (c *Controller) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func (c *Controller) ignore(reason string) {
	c.count(func(s *Stats) { s.Ignored[reason]++ })
}

// Run reads the reports of the last window and then new ones as they
// come, promoting sources, until ctx is done; it returns nil then. If
// reading the stream fails it logs, waits and reads again from the
// window's start (what it already counted is counted once). Run it once
// per Controller.
func (c *Controller) Run(ctx context.Context) error {
	var err error
	c.pub, err = hub.NewPublisher(ctx, c.o.Conn)
	if err != nil {
		return err
	}
	if c.trust != nil {
		c.pub.Trust(c.trust)
	}
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("fleet controller: reading reports", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// session reads the reports stream from the window's start.
func (c *Controller) session(ctx context.Context) error {
	js, err := jetstream.New(c.o.Conn)
	if err != nil {
		return err
	}
	start := c.o.Now().Add(-c.o.Window)
	cons, err := js.OrderedConsumer(ctx, hub.ReportStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{hub.ReportSubjectPrefix + "*"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", hub.ReportStream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", hub.ReportStream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", hub.ReportStream, err)
		}
		arrived := c.o.Now()
		if md, err := m.Metadata(); err == nil {
			arrived = md.Timestamp
		}
		c.handle(ctx, m.Subject(), m.Data(), arrived)
	}
}

// handle takes one report.
func (c *Controller) handle(ctx context.Context, subject string, data []byte, arrived time.Time) {
	defer c.count(func(s *Stats) { s.Reports++ }) // after: Reports == n means n handled
	now := c.o.Now()
	c.sweep(now)
	edge := strings.TrimPrefix(subject, hub.ReportSubjectPrefix)
	r, err := report.Parse(data)
	if err != nil || change.ValidEdgeName(edge) != nil {
		c.ignore(IgnoredMalformed)
		return
	}
	if r.Edge != edge {
		c.ignore(IgnoredEdgeMismatch)
		return
	}
	min := change.ControllerBroadestV6
	if r.Prefix.Addr().Is4() {
		min = change.ControllerBroadestV4
	}
	if r.Prefix.Bits() < min {
		c.ignore(IgnoredTooBroad)
		return
	}
	// The edge's clock dates the report, but no later than its arrival:
	// an edge cannot keep a report in the window by dating it ahead.
	at := r.At
	if at.After(arrived) {
		at = arrived
	}
	if !at.After(now.Add(-c.o.Window)) || (!r.Until.IsZero() && !r.Until.After(now)) {
		c.ignore(IgnoredStale)
		return
	}
	if _, known := c.sources[r.Prefix]; !known && c.o.MinEdges > 1 && c.alone[edge] >= c.loneShare() {
		c.ignore(IgnoredEdgeQuota)
		return
	}
	s := c.track(r.Prefix, now)
	if at.After(s.edges[edge]) {
		s.edges[edge] = at
	}
	if at.After(s.last) {
		s.last = at
	}
	c.prune(s, now)
	c.setLone(s)
	if len(s.edges) >= c.o.MinEdges && !now.Before(s.hold) {
		c.promote(ctx, s, now)
	}
}

// track returns the source for p, made most recently reported, creating
// it (and evicting the least recently reported one if full).
func (c *Controller) track(p netip.Prefix, now time.Time) *source {
	if s, ok := c.sources[p]; ok {
		c.lru.MoveToFront(s.el)
		return s
	}
	if len(c.sources) >= c.o.MaxSources {
		c.forget(c.lru.Back().Value.(*source))
		c.count(func(s *Stats) { s.Evicted++ })
	}
	s := &source{prefix: p, edges: map[string]time.Time{}}
	s.el = c.lru.PushFront(s)
	c.sources[p] = s
	c.count(func(st *Stats) { st.Sources = len(c.sources) })
	return s
}

// prune drops a source's reports that left the window, and its oldest
// beyond MinEdges (enough to decide).
func (c *Controller) prune(s *source, now time.Time) {
	cutoff := now.Add(-c.o.Window)
	for e, t := range s.edges {
		if !t.After(cutoff) {
			delete(s.edges, e)
		}
	}
	for len(s.edges) > c.o.MinEdges {
		var oldest string
		var ot time.Time
		for e, t := range s.edges {
			if oldest == "" || t.Before(ot) {
				oldest, ot = e, t
			}
		}
		delete(s.edges, oldest)
	}
}

// sweep forgets the sources whose last report left the window.
func (c *Controller) sweep(now time.Time) {
	cutoff := now.Add(-c.o.Window)
	for el := c.lru.Back(); el != nil; el = c.lru.Back() {
		s := el.Value.(*source)
		if s.last.After(cutoff) {
			break
		}
		c.forget(s)
	}
	c.count(func(st *Stats) { st.Sources = len(c.sources) })
}

// forget drops a source.
func (c *Controller) forget(s *source) {
	c.lru.Remove(s.el)
	delete(c.sources, s.prefix)
	s.edges = nil
	c.setLone(s)
}

// setLone keeps alone in step with who reports s.
func (c *Controller) setLone(s *source) {
	lone := ""
	if len(s.edges) == 1 {
		for e := range s.edges {
			lone = e
		}
	}
	if lone == s.lone {
		return
	}
	if s.lone != "" {
		if c.alone[s.lone]--; c.alone[s.lone] <= 0 {
			delete(c.alone, s.lone)
		}
	}
	if lone != "" {
		c.alone[lone]++
	}
	s.lone = lone
}

// loneShare is how many sources one edge may be the only one to report:
// an eighth of the table, so that filling it takes eight edges. With
// min_edges 1 one edge is enough to promote, and there is no share.
func (c *Controller) loneShare() int { return max(1, c.o.MaxSources/8) }

// held is why a promotion is withheld, and until when.
type held struct {
	operator bool
	until    time.Time
}

func (h *held) Error() string {
	if h.operator {
		return "an operator's record stands"
	}
	return "a live promotion stands"
}

// promote publishes a block for s, unless the key's record says not to.
func (c *Controller) promote(ctx context.Context, s *source, now time.Time) {
	n := len(s.edges)
	env, err := change.Sign(change.Change{
		Kind: change.KindList, Op: change.OpPut, List: change.Blocklist, Prefix: s.prefix,
		Reason:    fmt.Sprintf("auto-block: reported by %d edges", n),
		IssuedAt:  now.UnixNano(),
		ExpiresAt: now.Add(c.o.TTL).UnixNano(),
	}, c.o.Key)
	if err != nil { // the prefix was checked: cannot happen
		c.log.Error("fleet controller: signing a promotion", "prefix", s.prefix, "err", err)
		return
	}
	_, err = c.pub.PublishIf(ctx, env, func(h *change.Change) error { return c.mayReplace(h, now) })
	var hd *held
	switch {
	case err == nil:
		s.hold = now.Add(c.o.TTL / 2)
		c.count(func(st *Stats) { st.Promotions++ })
		c.log.Info("fleet controller: auto-block promoted", "prefix", s.prefix, "edges", n,
			"expires", now.Add(c.o.TTL).UTC().Format(time.RFC3339))
	case errors.As(err, &hd):
		s.hold = hd.until
		if hd.operator {
			c.ignore(IgnoredOperator)
		}
	default:
		// Try again on a later report, not on every one.
		s.hold = now.Add(min(c.o.Window, 5*time.Second))
		c.count(func(st *Stats) { st.Errors++ })
		c.log.Warn("fleet controller: publishing a promotion", "prefix", s.prefix, "err", err)
	}
}

// mayReplace decides over the record the hub holds for the key: nothing
// or an expired entry may be replaced; the controller's own promotion
// only when less than half its TTL is left; an operator's live entry
// never, and an operator's deletion not within a TTL of it (the operator
// just lifted this block).
func (c *Controller) mayReplace(h *change.Change, now time.Time) error {
	if h == nil {
		return nil
	}
	n := now.UnixNano()
	if h.KeyID == c.keyID {
		if h.Op == change.OpPut && h.ExpiresAt-n > (c.o.TTL/2).Nanoseconds() {
			return &held{until: time.Unix(0, h.ExpiresAt).Add(-c.o.TTL / 2)}
		}
		return nil
	}
	switch {
	case h.Op == change.OpPut && (h.ExpiresAt == 0 || h.ExpiresAt > n):
		// Look again after a window (the operator may remove it) or once
		// it has expired, whichever is first.
		until := now.Add(c.o.Window)
		if h.ExpiresAt != 0 && h.ExpiresAt < until.UnixNano() {
			until = time.Unix(0, h.ExpiresAt)
		}
		return &held{operator: true, until: until}
	case h.Op == change.OpDelete && h.IssuedAt+c.o.TTL.Nanoseconds() > n:
		return &held{operator: true, until: time.Unix(0, h.IssuedAt).Add(c.o.TTL)}
	}
	return nil
}
