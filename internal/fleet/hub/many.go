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

	type pending struct {
		i   int
		ack jetstream.PubAckFuture
	}
	var inflight []pending
	var retry []int
	collect := func() error {
		for _, pd := range inflight {
			select {
			case <-pd.ack.Ok():
				res.Published++
			case err := <-pd.ack.Err():
				if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err) {
					retry = append(retry, pd.i)
					continue
				}
				return fmt.Errorf("publishing %s: %w", changes[pd.i].Key, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		inflight = inflight[:0]
		return nil
	}
	for i, env := range envs {
		c := changes[i]
		value := env.Encode()
		h := current[c.Key]
		if h.value != nil {
			if string(h.value) == string(value) {
				res.Same++
				continue
			}
			if old, ok := storedChange(h.value); ok && !change.Newer(c, old) {
				res.Stale++
				continue
			}
		}
		ack, err := p.js.PublishAsync(SubjectPrefix+c.Key, value, jetstream.WithExpectLastSequencePerSubject(h.rev))
		if err != nil {
			return res, fmt.Errorf("publishing %s: %w", c.Key, err)
		}
		inflight = append(inflight, pending{i, ack})
		if len(inflight) >= 1024 {
			if err := collect(); err != nil {
				return res, err
			}
		}
	}
	if err := collect(); err != nil {
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
