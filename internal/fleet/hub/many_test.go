package hub

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/testutil"
)

func TestPublishMany(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	key := signer(t)
	now := time.Now()
	changes := func(n int, issued time.Time) []change.Change {
		var out []change.Change
		for i := range n {
			out = append(out, change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
				Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)), IssuedAt: issued.UnixNano()})
		}
		return out
	}
	// A newer record already on the hub for key 7 must survive the import.
	newer := blockAt(t, key, "10.0.7.0/24", now.Add(time.Second))
	if _, err := pub.Publish(ctx, newer); err != nil {
		t.Fatal(err)
	}
	envs, err := change.SignBatch(changes(3000, now), key)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := pub.PublishMany(ctx, envs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("published %d records in %v", res.Published, time.Since(start).Round(time.Millisecond))
	if res != (ManyResult{Published: 2999, Stale: 1}) {
		t.Fatalf("PublishMany = %+v, want 2999 published, 1 stale", res)
	}
	st, err := h.KV.Status(ctx)
	if err != nil || st.Values() != 3000 {
		t.Fatalf("bucket holds %d values (%v), want 3000", st.Values(), err)
	}
	e, err := h.KV.Get(ctx, newer.StoredKey)
	if err != nil || string(e.Value()) != string(newer.Encode()) {
		t.Fatalf("the newer record was overwritten: %v", err)
	}
	// Importing the same again writes nothing.
	if res, err := pub.PublishMany(ctx, envs); err != nil || res != (ManyResult{Same: 2999, Stale: 1}) {
		t.Fatalf("second import = %+v, %v; want 2999 same, 1 stale", res, err)
	}
	// A small import goes one by one, with the same outcome rules.
	small, err := change.SignBatch(changes(10, now.Add(2*time.Second)), key)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := pub.PublishMany(ctx, small); err != nil || res != (ManyResult{Published: 10}) {
		t.Fatalf("small import = %+v, %v", res, err)
	}
	if _, err := pub.PublishMany(ctx, append(small, small[0])); err == nil {
		t.Fatal("PublishMany accepted two records for one key")
	}
}

// TestPublishBatches: records arriving in batches while the publisher
// runs end up as PublishMany's would; a record whose key was not
// announced (or comes twice) stops the import with an error, and the
// sender is never left blocked on the channel.
func TestPublishBatches(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	key := signer(t)
	now := time.Now()
	var cs []change.Change
	var keys []string
	for i := range 600 {
		c := change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
			Prefix: netip.MustParsePrefix(fmt.Sprintf("10.9.%d.%d/32", i/256, i%256)), IssuedAt: now.UnixNano()}
		k, err := change.KeyFor(c)
		if err != nil {
			t.Fatal(err)
		}
		cs, keys = append(cs, c), append(keys, k)
	}
	senders := make(chan struct{}, 8)
	send := func(envs []change.Envelope, per int) <-chan []change.Envelope {
		ch := make(chan []change.Envelope) // unbuffered: the sender waits on every batch
		go func() {
			defer func() { close(ch); senders <- struct{}{} }()
			for len(envs) > 0 {
				m := min(per, len(envs))
				ch <- envs[:m]
				envs = envs[m:]
			}
		}()
		return ch
	}
	envs, err := change.SignImport(cs, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pub.PublishBatches(ctx, keys, send(envs, 100))
	if err != nil || res != (ManyResult{Published: 600}) {
		t.Fatalf("PublishBatches = %+v, %v; want 600 published", res, err)
	}
	if st, err := h.KV.Status(ctx); err != nil || st.Values() != 600 {
		t.Fatalf("bucket holds %d values (%v), want 600", st.Values(), err)
	}

	// Announced keys that do not match the records, or a record twice:
	// refused, and the goroutine feeding the channel still finishes.
	other := append([]string(nil), keys...)
	other[450] = "list.block.192-0-2-1_32"
	twice := append(append([]change.Envelope(nil), envs[:500]...), envs[3])
	for name, tc := range map[string]struct {
		keys []string
		envs []change.Envelope
	}{
		"unannounced":   {other, envs},
		"twice":         {keys, twice},
		"ending early":  {keys, envs[:300]},
		"small, ending": {keys[:10], envs[:9]},
	} {
		if _, err := pub.PublishBatches(ctx, tc.keys, send(tc.envs, 7)); err == nil {
			t.Errorf("%s: PublishBatches accepted it", name)
		}
	}
	if _, err := pub.PublishBatches(ctx, append(keys[:3:3], keys[1]), send(envs[:3], 1)); err == nil {
		t.Error("a key announced twice was accepted")
	}
	for i := range 6 {
		select {
		case <-senders:
		case <-time.After(testutil.WaitTimeout):
			t.Fatalf("%d of 6 senders still blocked on their channel", 6-i)
		}
	}
}
