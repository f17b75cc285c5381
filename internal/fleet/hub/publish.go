package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// ErrStale is returned (wrapped) by Publish when the hub already holds a
// change for the key that is as new or newer: publishing the older one
// would make fresh edges converge on it while running edges ignore it.
var ErrStale = errors.New("the hub holds a newer change for this key")

// Publisher writes signed changes and modules to the hub. An operator's
// CLI and the controller use it.
type Publisher struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	modules jetstream.ObjectStore
	trust   *change.Verifier
}

// Trust makes the publisher weigh only held records that v accepts:
// anything else stored under a key (a record signed by an unknown key, a
// forged one dated far ahead) counts as nothing held, so it neither
// stands as a decision nor makes a genuine change look stale. Without it
// a held record is read unverified (change.Peek). Call before use.
func (p *Publisher) Trust(v *change.Verifier) { p.trust = v }

// peek reads the record held under key as the publisher weighs it. s, if
// not nil, is a session on the publisher's verifier for a run of records
// (PublishBatches).
func (p *Publisher) peek(key string, record []byte, s *change.Session) (change.Change, bool) {
	if p.trust == nil {
		return change.Peek(record)
	}
	env, err := change.Decode(record)
	if err != nil {
		return change.Change{}, false
	}
	env.StoredKey = key
	check := p.trust.Check
	if s != nil {
		check = s.Check
	}
	c, err := check(env, time.Now())
	return c, err == nil
}

// NewPublisher opens the buckets on nc. They must exist (the hub creates
// them).
func NewPublisher(ctx context.Context, nc *nats.Conn) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*maxInflight))
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s (is the hub running?): %w", Bucket, err)
	}
	obj, err := js.ObjectStore(ctx, ModuleBucket)
	if err != nil {
		return nil, fmt.Errorf("opening object store %s: %w", ModuleBucket, err)
	}
	return &Publisher{js: js, kv: kv, modules: obj}, nil
}

// Publish stores env under its key and returns the revision the hub
// acknowledged (the JetStream sequence, durable on the hub's replicas). It
// writes only if the record stored there now is older (compare and swap
// on the revision), so concurrent operators cannot let an older change
// overwrite a newer one.
func (p *Publisher) Publish(ctx context.Context, env change.Envelope) (uint64, error) {
	rev, _, err := p.publish(ctx, env, nil)
	return rev, err
}

// PublishIf is Publish on a condition: allow sees the record the hub
// holds for the key (nil if none, or if what is stored is no signed
// record), and the write happens only if it returns nil and that record
// is still the one stored (compare and swap on its revision); otherwise
// allow is asked again about the newer one. Its error is returned as is.
// The controller uses it so that an operator's entry written at any
// moment is never replaced.
func (p *Publisher) PublishIf(ctx context.Context, env change.Envelope, allow func(held *change.Change) error) (uint64, error) {
	rev, _, err := p.publish(ctx, env, allow)
	return rev, err
}

// publish is Publish, also reporting whether the hub already held the
// identical record.
func (p *Publisher) publish(ctx context.Context, env change.Envelope, allow func(*change.Change) error) (uint64, bool, error) {
	c, err := change.ParsePayload(env.Payload)
	if err != nil {
		return 0, false, err
	}
	value := env.Encode()
	for {
		cur, err := p.kv.Get(ctx, c.Key)
		if allow != nil && (err == nil || errors.Is(err, jetstream.ErrKeyNotFound)) {
			var held *change.Change
			if err == nil {
				if h, ok := p.peek(c.Key, cur.Value(), nil); ok {
					held = &h
				}
			}
			if aerr := allow(held); aerr != nil {
				return 0, false, aerr
			}
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err := p.kv.Create(ctx, c.Key, value)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // raced with another writer (or a delete marker): look again
			}
			if err != nil {
				return 0, false, fmt.Errorf("publishing %s: %w", c.Key, err)
			}
			return rev, false, nil
		case err != nil:
			return 0, false, fmt.Errorf("reading %s: %w", c.Key, err)
		}
		if held, ok := p.peek(c.Key, cur.Value(), nil); ok && !change.Newer(c, held) {
			if change.SameRecord(cur.Value(), value) {
				return cur.Revision(), true, nil // the same record: already published
			}
			return 0, false, fmt.Errorf("%w: %s issued %s", ErrStale, c.Key, time.Unix(0, held.IssuedAt).UTC().Format(time.RFC3339Nano))
		}
		rev, err := p.kv.Update(ctx, c.Key, value, cur.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // someone wrote in between
		}
		if err != nil {
			return 0, false, fmt.Errorf("publishing %s: %w", c.Key, err)
		}
		return rev, false, nil
	}
}

// PutModule stores a function module under its hex SHA-256 (the digest a
// function change signs) and returns the digest. Publish the module
// before the change that names it. An object already under that name is
// kept only if it reads back as the module: anyone who may write to the
// store could have put other bytes there first, which every edge would
// refuse.
func (p *Publisher) PutModule(ctx context.Context, module []byte) (string, error) {
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	if p.holdsModule(ctx, digest, module) {
		return digest, nil
	}
	if _, err := p.modules.PutBytes(ctx, digest, module); err != nil {
		return "", fmt.Errorf("storing module %s: %w", digest, err)
	}
	return digest, nil
}

// holdsModule reports whether the store holds module under digest, read
// back whole (and no further than its size).
func (p *Publisher) holdsModule(ctx context.Context, digest string, module []byte) bool {
	// Chunks that never come must not use up the upload's time.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second+time.Duration(len(module)>>20)*time.Second)
	defer cancel()
	info, err := p.modules.GetInfo(ctx, digest)
	if err != nil || info.Size != uint64(len(module)) || info.Opts != nil && info.Opts.Link != nil {
		return false
	}
	r, err := p.modules.Get(ctx, digest)
	if err != nil {
		return false
	}
	defer r.Close()
	held, err := io.ReadAll(io.LimitReader(r, int64(len(module))+1))
	return err == nil && bytes.Equal(held, module)
}

// CompactTombstones removes signed deletions issued before cutoff from the
// bucket, so deleted keys do not accumulate for ever. It first raises the
// stream's MetaCompacted watermark to the highest revision it will
// remove, then purges each tombstone's subject up to that tombstone's
// revision only (a newer record written meanwhile stays). An edge that had
// not applied a removed tombstone sees its cursor below the watermark and
// reconciles fully. It returns how many tombstones it removed.
func CompactTombstones(ctx context.Context, js jetstream.JetStream, cutoff time.Time) (int, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return 0, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, err
	}
	type victim struct {
		key string
		rev uint64
	}
	var victims []victim
	var high uint64
	for e := range w.Updates() {
		if e == nil {
			break
		}
		c, ok := change.Peek(e.Value())
		if ok && c.Op == change.OpDelete && c.IssuedAt < cutoff.UnixNano() {
			victims = append(victims, victim{e.Key(), e.Revision()})
			high = max(high, e.Revision())
		}
	}
	w.Stop()
	if len(victims) == 0 {
		return 0, nil
	}
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	cfg := info.Config
	if old, _ := strconv.ParseUint(cfg.Metadata[MetaCompacted], 10, 64); old < high {
		md := make(map[string]string, len(cfg.Metadata)+1)
		for k, v := range cfg.Metadata {
			md[k] = v
		}
		md[MetaCompacted] = strconv.FormatUint(high, 10)
		cfg.Metadata = md
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return 0, fmt.Errorf("raising the compaction watermark: %w", err)
		}
	}
	for i, v := range victims {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(SubjectPrefix+v.key), jetstream.WithPurgeSequence(v.rev+1)); err != nil {
			return i, fmt.Errorf("removing tombstone %s: %w", v.key, err)
		}
	}
	return len(victims), nil
}
