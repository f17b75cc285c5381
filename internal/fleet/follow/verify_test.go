package follow

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// entry is a KV entry as a watch delivers it.
type entry struct {
	key   string
	value []byte
	op    jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return "test" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return 1 }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// TestVerifyAllChecksEveryEntryOnce: the workers of a large delivery take
// runs of entries with sessions of their own; every entry must get the
// verdict a fresh verifier gives it alone, none skipped or checked under
// another's slot. The delivery mixes three import batches with forged
// records next to the genuine ones whose proofs they share, deletion
// markers, a malformed value and a record of an unknown key, and it is
// cut at lengths around the run size.
func TestVerifyAllChecksEveryEntryOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	policy := change.Policy{Operators: []ed25519.PublicKey{pub}}
	changes := make([]change.Change, 3*change.ImportBatch-40)
	for i := range changes {
		changes[i] = block(fmt.Sprintf("10.9.%d.%d/32", i/256, i%256))
	}
	envs, err := change.SignImport(changes, priv)
	if err != nil {
		t.Fatal(err)
	}
	alien, err := change.Sign(block("10.8.0.1/32"), stranger)
	if err != nil {
		t.Fatal(err)
	}
	var all []jetstream.KeyValueEntry
	for i, env := range envs {
		all = append(all, entry{env.StoredKey, env.Encode(), jetstream.KeyValuePut})
		switch i % 29 {
		case 5: // the same record, its payload edited
			forged := env
			forged.Payload = append(env.Payload[:len(env.Payload)-1:len(env.Payload)-1], ' ')
			all = append(all, entry{env.StoredKey, forged.Encode(), jetstream.KeyValuePut})
		case 11: // another record's proof
			forged := env
			forged.Batch = envs[(i+1)%len(envs)].Batch
			all = append(all, entry{env.StoredKey, forged.Encode(), jetstream.KeyValuePut})
		case 17:
			all = append(all, entry{env.StoredKey, nil, jetstream.KeyValueDelete})
		case 23:
			all = append(all, entry{env.StoredKey, []byte("{not a record"), jetstream.KeyValuePut})
		case 28:
			all = append(all, entry{alien.StoredKey, alien.Encode(), jetstream.KeyValuePut})
		}
	}
	now := time.Now()
	for _, n := range []int{parallelFrom - 1, parallelFrom, parallelFrom + 1, 2*parallelFrom + 3, len(all)} {
		v, err := change.NewVerifier(policy)
		if err != nil {
			t.Fatal(err)
		}
		got, errs := verifyAll(v, all[:n], now)
		refused := 0
		for i, e := range all[:n] {
			if e.Operation() != jetstream.KeyValuePut {
				if errs[i] != nil || got[i].Key != "" {
					t.Fatalf("n=%d: marker %d got %+v, %v", n, i, got[i], errs[i])
				}
				continue
			}
			fresh, _ := change.NewVerifier(policy)
			var want change.Change
			var werr error
			if env, err := change.Decode(e.Value()); err != nil {
				werr = &change.Refusal{Reason: change.ReasonMalformed, Err: err}
			} else {
				env.StoredKey = e.Key()
				want, werr = fresh.Check(env, now)
			}
			if change.ReasonOf(errs[i]) != change.ReasonOf(werr) || (errs[i] == nil) != (werr == nil) {
				t.Fatalf("n=%d: entry %d: verifyAll says %v, a fresh verifier %v", n, i, errs[i], werr)
			}
			if werr == nil && got[i].Key != want.Key {
				t.Fatalf("n=%d: entry %d holds %q, want %q", n, i, got[i].Key, want.Key)
			}
			if werr != nil {
				refused++
			}
		}
		if n == len(all) && refused == 0 {
			t.Fatal("no forged entry in the delivery")
		}
	}
}
