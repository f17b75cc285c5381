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
	FullReconciles uint64            `json:"full_reconciles"`
	LastApplied    time.Time         `json:"last_applied,omitzero"`
	Reported       time.Time         `json:"reported"`
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
			var r EdgeReport
			if json.Unmarshal(e.Value(), &r) == nil {
				out = append(out, r)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// WaitApplied waits until each edge named (or, with none named, each edge
// that reported within fresh before the call) reports having applied
// revision rev of the current change bucket, and returns the names of
// those that had not when ctx ended (nil if all did). This is `--wait`.
func WaitApplied(ctx context.Context, js jetstream.JetStream, rev uint64, names []string, fresh time.Duration) ([]string, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	epoch := strconv.FormatInt(info.Created.UnixNano(), 10)
	kv, err := js.KeyValue(ctx, EdgesBucket)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", EdgesBucket, err)
	}
	// The watch has its own context: ctx ending is the answer, not an error.
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := kv.WatchAll(wctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	waiting := map[string]bool{}
	for _, n := range names {
		waiting[n] = true
	}
	pickAll := len(names) == 0
	start := time.Now()
	initial := true
	missing := func() []string {
		var out []string
		for n, w := range waiting {
			if w {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	for {
		if !initial && len(missing()) == 0 {
			return nil, nil
		}
		select {
		case e := <-w.Updates():
			if e == nil {
				initial = false
				continue
			}
			var r EdgeReport
			if json.Unmarshal(e.Value(), &r) != nil {
				continue
			}
			done := r.Epoch == epoch && r.Seq >= rev
			if _, named := waiting[r.Name]; named {
				waiting[r.Name] = !done
			} else if pickAll && initial && start.Sub(r.Reported) <= fresh {
				waiting[r.Name] = !done
			}
		case <-ctx.Done():
			if m := missing(); len(m) > 0 {
				return m, nil
			}
			return nil, nil
		}
	}
}
