package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// ManyResult counts what PublishMany did.
type ManyResult struct {
	Published int // written and acknowledged
	Same      int // the hub already held the identical record
	Stale     int // the hub held a newer change for the key: not written
}

// maxInflight bounds the writes PublishMany has waiting for their
// acknowledgement; the publisher's client allows twice as many pending
// async publishes, so writes never stall on the client's bound.
const maxInflight = 8192

// manyThreshold is the size below which PublishMany publishes one by one:
// reading the whole bucket first pays off only for imports.
const manyThreshold = 64

// PublishMany publishes many records (an import, usually from
// change.SignImport) with pipelined writes, and returns once the hub has
// acknowledged all of them. Like Publish it never overwrites a record
// with an older one: it reads every key's current revision in one pass,
// writes each record on the condition that its key is still at that
// revision, and retries the few that raced with another writer through
// Publish. At most one record per key.
func (p *Publisher) PublishMany(ctx context.Context, envs []change.Envelope) (ManyResult, error) {
	keys := make([]string, len(envs))
	for i, env := range envs {
		c, err := change.ParsePayload(env.Payload)
		if err != nil {
			return ManyResult{}, fmt.Errorf("record %d: %w", i, err)
		}
		keys[i] = c.Key
	}
	batches := make(chan []change.Envelope, 1)
	batches <- envs
	close(batches)
	return p.PublishBatches(ctx, keys, batches)
}

// PublishBatches is PublishMany for records that arrive while it runs:
// keys names every record's storage key up front (the hub's current
// records for them are read while the first batches are still being
// signed), and the records come in batches until the channel is closed.
// A record for a key not in keys is refused. The caller closes batches,
// also on its own failure, and then reports that failure itself.
func (p *Publisher) PublishBatches(ctx context.Context, keys []string, batches <-chan []change.Envelope) (ManyResult, error) {
	// Whatever happens, the sender must not block on a channel no one
	// reads any more; drained in the background, so that an early error
	// returns at once and the caller can stop the sender.
	defer func() {
		go func() {
			for range batches {
			}
		}()
	}()
	var res ManyResult
	want := make(map[string]bool, len(keys))
	for i, k := range keys {
		if want[k] {
			return res, fmt.Errorf("record %d: a second record for %s", i, k)
		}
		want[k] = true
	}
	next := func(yield func(change.Envelope, change.Change) error) error {
		i := 0
		for b := range batches {
			for _, env := range b {
				c, err := change.ParsePayload(env.Payload)
				if err != nil {
					return fmt.Errorf("record %d: %w", i, err)
				}
				if !want[c.Key] {
					return fmt.Errorf("record %d: %s is not among the keys announced, or came twice", i, c.Key)
				}
				delete(want, c.Key)
				if err := yield(env, c); err != nil {
					return err
				}
				i++
			}
		}
		if len(want) > 0 {
			return fmt.Errorf("the records ended after %d of %d", i, len(keys))
		}
		return nil
	}
	if len(keys) < manyThreshold {
		err := next(func(env change.Envelope, _ change.Change) error { return p.publishOne(ctx, env, &res) })
		return res, err
	}

	type held struct {
		rev   uint64
		value []byte
	}
	current := map[string]held{}
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		return res, fmt.Errorf("reading the bucket: %w", err)
	}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if want[e.Key()] {
			v := e.Value()
			if e.Operation() != jetstream.KeyValuePut {
				v = nil
			}
			current[e.Key()] = held{e.Revision(), v}
		}
	}
	w.Stop()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	// A sliding window of acknowledgements: one goroutine collects them in
	// order while this one keeps writing, so the hub is never idle waiting
	// for a whole window to drain.
	type pending struct {
		env change.Envelope
		key string
		ack jetstream.PubAckFuture
	}
	inflight := make(chan pending, maxInflight)
	var retry []change.Envelope
	collected := make(chan error, 1)
	go func() {
		var err error
		for pd := range inflight {
			if err != nil {
				continue // drain
			}
			select {
			case <-pd.ack.Ok():
				res.Published++
			case aerr := <-pd.ack.Err():
				if errors.Is(aerr, jetstream.ErrKeyExists) || isWrongLastSequence(aerr) {
					retry = append(retry, pd.env)
					continue
				}
				err = fmt.Errorf("publishing %s: %w", pd.key, aerr)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		collected <- err
	}()
	// The held records are weighed in the import's order, which is
	// their batches' order when the import is published again.
	var sess *change.Session
	if p.trust != nil {
		sess = p.trust.Session()
	}
	pubErr := next(func(env change.Envelope, c change.Change) error {
		value := env.Encode()
		h := current[c.Key]
		if h.value != nil {
			if change.SameRecord(h.value, value) {
				res.Same++
				return nil
			}
			if old, ok := p.peek(c.Key, h.value, sess); ok && !change.Newer(c, old) {
				res.Stale++
				return nil
			}
		}
		ack, err := p.js.PublishAsync(SubjectPrefix+c.Key, value, jetstream.WithExpectLastSequencePerSubject(h.rev))
		if err != nil {
			return fmt.Errorf("publishing %s: %w", c.Key, err)
		}
		inflight <- pending{env, c.Key, ack}
		return nil
	})
	close(inflight)
	if err := errors.Join(pubErr, <-collected); err != nil {
		return res, err
	}
	for _, env := range retry {
		if err := p.publishOne(ctx, env, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (p *Publisher) publishOne(ctx context.Context, env change.Envelope, res *ManyResult) error {
	_, same, err := p.publish(ctx, env, nil)
	switch {
	case errors.Is(err, ErrStale):
		res.Stale++
	case err != nil:
		return err
	case same:
		res.Same++
	default:
		res.Published++
	}
	return nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}
