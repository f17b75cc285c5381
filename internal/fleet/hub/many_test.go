package hub

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/change"
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
