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
// change.SignBatch) with pipelined writes, and returns once the hub has
// acknowledged all of them. Like Publish it never overwrites a record
// with an older one: it reads every key's current revision in one pass,
// writes each record on the condition that its key is still at that
// revision, and retries the few that raced with another writer through
// Publish. At most one record per key.
func (p *Publisher) PublishMany(ctx context.Context, envs []change.Envelope) (ManyResult, error) {
	var res ManyResult
	changes := make([]change.Change, len(envs))
	keys := make(map[string]bool, len(envs))
	for i, env := range envs {
		c, err := change.ParsePayload(env.Payload)
		if err != nil {
			return res, fmt.Errorf("record %d: %w", i, err)
		}
		if keys[c.Key] {
			return res, fmt.Errorf("record %d: a second record for %s", i, c.Key)
		}
		keys[c.Key] = true
		changes[i] = c
	}
	if len(envs) < manyThreshold {
		for _, env := range envs {
			if err := p.publishOne(ctx, env, &res); err != nil {
				return res, err
			}
		}
		return res, nil
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
		if keys[e.Key()] {
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
		i   int
		ack jetstream.PubAckFuture
	}
	inflight := make(chan pending, maxInflight)
	var retry []int
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
					retry = append(retry, pd.i)
					continue
				}
				err = fmt.Errorf("publishing %s: %w", changes[pd.i].Key, aerr)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		collected <- err
	}()
	var pubErr error
	for i, env := range envs {
		c := changes[i]
		value := env.Encode()
		h := current[c.Key]
		if h.value != nil {
			if string(h.value) == string(value) {
				res.Same++
				continue
			}
			if old, ok := p.peek(c.Key, h.value); ok && !change.Newer(c, old) {
				res.Stale++
				continue
			}
		}
		ack, err := p.js.PublishAsync(SubjectPrefix+c.Key, value, jetstream.WithExpectLastSequencePerSubject(h.rev))
		if err != nil {
			pubErr = fmt.Errorf("publishing %s: %w", c.Key, err)
			break
		}
		inflight <- pending{i, ack}
	}
	close(inflight)
	if err := errors.Join(pubErr, <-collected); err != nil {
		return res, err
	}
	for _, i := range retry {
		if err := p.publishOne(ctx, envs[i], &res); err != nil {
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
