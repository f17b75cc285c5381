package hub

import (
	"context"
	"encoding/json"
	"fmt"

	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// EdgesBucket is the KV bucket where each edge reports where it is, under
// its name (fleet.name): what `aegis fleet edges` lists and `--wait`
// waits on. Reports are the edges' word, not signed: they inform
// operators and decide nothing on an edge.
const EdgesBucket = "aegis_edges"

// EdgeReport is an edge's report of itself.
type EdgeReport struct {
	Name string `json:"name"`
	// Epoch and Seq are the edge's cursor: the change bucket's identity and
	// the last revision the edge applied.
	Epoch          string            `json:"epoch"`
	Seq            uint64            `json:"seq"`
	CaughtUp       bool              `json:"caught_up"`
	Applied        uint64            `json:"applied"`
	Ignored        uint64            `json:"ignored"`
	Refused        map[string]uint64 `json:"refused,omitempty"`
	RecentRefusals []Refusal         `json:"recent_refusals,omitempty"`
	FullReconciles uint64            `json:"full_reconciles"`
	LastApplied    time.Time         `json:"last_applied,omitzero"`
	// Reported is when the hub stored the report (the edge's own clock is
	// not trusted for it: an edge behind would look gone, one ahead
	// connected for ever).
	Reported time.Time `json:"reported"`
}

// Refusal is a record an edge refused: its key, revision and reason.
type Refusal struct {
	Key    string `json:"key"`
	Rev    uint64 `json:"rev"`
	Reason string `json:"reason"`
}

// reportOf reads an edge's report from its entry: one stored under
// another edge's name is no report (an edge may write only under its
// own, but not what its report says).
func reportOf(e jetstream.KeyValueEntry) (EdgeReport, bool) {
	var r EdgeReport
	if json.Unmarshal(e.Value(), &r) != nil || r.Name != e.Key() || ValidEdgeName(r.Name) != nil {
		return EdgeReport{}, false
	}
	r.Reported = e.Created()
	return r, true
}

// ValidEdgeName is change.ValidEdgeName, the one rule of edge names.
var ValidEdgeName = change.ValidEdgeName

// Report writes r under its name in the edges bucket.
func Report(ctx context.Context, kv jetstream.KeyValue, r EdgeReport) error {
	if err := ValidEdgeName(r.Name); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, r.Name, b)
	return err
}

// Edges returns every edge's last report, by name.
func Edges(ctx context.Context, js jetstream.JetStream) ([]EdgeReport, error) {
	kv, err := js.KeyValue(ctx, EdgesBucket)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", EdgesBucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []EdgeReport
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				slices.SortFunc(out, func(a, b EdgeReport) int {
					switch {
					case a.Name < b.Name:
						return -1
					case a.Name > b.Name:
						return 1
					}
					return 0
				})
				return out, nil
			}
			if r, ok := reportOf(e); ok {
				out = append(out, r)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Published is what a command wrote: its records' revisions lie from From
// to To, under Keys (nil: any key).
type Published struct {
	From, To uint64
	Keys     map[string]bool
}

// WaitApplied waits until each edge named (or, with none named, each edge
// that reported within fresh before the call) reports having applied
// revision p.To of the current change bucket, or having refused one of
// p's records. It returns the names of those that had neither when ctx
// ended, and of those that refused (with the reason, `other` when it is
// not a plain word: the report is the edge's word), both sorted. This is
// `--wait`.
func WaitApplied(ctx context.Context, js jetstream.JetStream, p Published, names []string, fresh time.Duration) (missing, refused []string, err error) {
	rev := p.To
	tooShort := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("the wait ended before the edges' reports could be read: %w", err)
		}
		return err
	}
	epoch, err := bucketEpoch(ctx, js)
	if err != nil {
		return nil, nil, tooShort(err)
	}
	kv, err := js.KeyValue(ctx, EdgesBucket)
	if err != nil {
		return nil, nil, tooShort(fmt.Errorf("opening %s: %w", EdgesBucket, err))
	}
	// The watch has its own context: ctx ending is the answer, not an error.
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := kv.WatchAll(wctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, err
	}
	defer w.Stop()
	waiting := map[string]bool{}
	for _, n := range names {
		waiting[n] = true
	}
	refusedBy := map[string]string{}
	pickAll := len(names) == 0
	start := time.Now()
	initial := true
	answer := func() (missing, refused []string) {
		for n, w := range waiting {
			if w {
				missing = append(missing, n)
			}
		}
		for n, why := range refusedBy {
			refused = append(refused, n+" ("+why+")")
		}
		slices.Sort(missing)
		slices.Sort(refused)
		return missing, refused
	}
	for {
		if m, rf := answer(); !initial && len(m) == 0 {
			return nil, rf, nil
		}
		select {
		case e := <-w.Updates():
			if e == nil {
				initial = false
				continue
			}
			r, ok := reportOf(e)
			if !ok {
				continue
			}
			_, named := waiting[r.Name]
			if !named && !(pickAll && initial && start.Sub(r.Reported) <= fresh) {
				continue
			}
			waiting[r.Name] = !(r.Epoch == epoch && r.Seq >= rev)
			if r.Epoch != epoch {
				continue
			}
			for _, rf := range r.RecentRefusals {
				if rf.Rev >= p.From && rf.Rev <= p.To && (p.Keys == nil || p.Keys[rf.Key]) {
					refusedBy[r.Name] = rf.Reason
					if !PlainReason(rf.Reason) {
						refusedBy[r.Name] = "other"
					}
				}
			}
		case <-ctx.Done():
			m, rf := answer()
			if initial {
				// Edges not read yet are not known to have applied: never
				// "applied by every edge" from part of the list.
				return m, rf, fmt.Errorf("the wait ended before every edge's report was read (%d read)", len(waiting))
			}
			return m, rf, nil
		}
	}
}

// PlainReason reports whether r can be a refusal reason: 1 to 32 of a-z
// and '_'. Anything else in a report (escape sequences for an operator's
// terminal) is printed as other.
func PlainReason(r string) bool {
	if len(r) == 0 || len(r) > 32 {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// bucketEpoch is the change bucket's identity, as edges' cursors name it.
func bucketEpoch(ctx context.Context, js jetstream.JetStream) (string, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return "", err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(info.Created.UnixNano(), 10), nil
}

// LastRevision is the change bucket's latest revision: what a command
// publishes next comes after it.
func LastRevision(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}
