package change

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// FuzzDecode feeds arbitrary bytes to the record decoder and the payload
// parser: they must return a clear error or a record that passes the
// field rules, never panic, and a decoded envelope must re-encode to a
// record that decodes to the same envelope.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"key_id":"0123456789abcdef","payload":"e30=","sig":"` + b64(make([]byte, 64)) + `"}`))
	f.Add([]byte(`{"kind":"list","op":"put","key":"list.block.192-0-2-0_24","list":"block","prefix":"192.0.2.0/24","issued_at":1,"key_id":"0123456789abcdef"}`))
	f.Add([]byte(`{"kind":"rate","op":"put","key":"rate.syn","rate":{"class":"syn","pps":10,"burst":20},"issued_at":1,"key_id":"0123456789abcdef"}`))
	f.Add([]byte(`{"v":2}`))
	for _, c := range []Change{block("192.0.2.0/24", time.Unix(1, 0)), block("2001:db8::/48", time.Unix(2, 0))} {
		c.Reason, c.ExpiresAt, c.KeyID = "abuse ü", 9, "0123456789abcdef"
		if b, err := json.Marshal(c); err == nil {
			f.Add(b)
		}
	}
	// Batch-signed records as SignBatch writes them.
	_, priv := newKey(f)
	if envs, err := SignBatch(batchOf(3, time.Unix(1, 0)), priv); err == nil {
		for _, e := range envs {
			f.Add(e.Encode())     // binary
			f.Add(e.encodeText()) // as records were written before the binary form
		}
		b := envs[1].Encode()
		f.Add(b[:binaryHead-1])
		f.Add(b[:binaryHead+sha256.Size])
		f.Add(append(b[:binaryHead-1:binaryHead-1], 0xff))
	}
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The hand-written reader of canonical records accepts only what
		// the general decoder accepts, with the same result.
		if fast, ok := decodeCanonical(data); ok {
			if fast.Batch != nil && fast.Batch.hashes != nil {
				// The proof as encoding/json holds it.
				for _, h := range fast.Batch.hashes {
					fast.Batch.Path = append(fast.Batch.Path, h[:])
				}
				fast.Batch.hashes = nil
			}
			var slow wireEnvelope
			if err := strictJSON(data, &slow); err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("canonical reader took %q as %+v, the JSON decoder as %+v (%v)", data, fast, slow, err)
			}
		}
		if fast, ok := parseCanonicalList(data); ok {
			var slow Change
			if err := strictJSON(data, &slow); err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("canonical reader took payload %q as %+v, the JSON decoder as %+v (%v)", data, fast, slow, err)
			}
		}
		env, err := Decode(data)
		if err == nil {
			again, err := Decode(env.Encode())
			if err != nil || again.KeyID != env.KeyID || string(again.Payload) != string(env.Payload) || string(again.Sig) != string(env.Sig) ||
				!reflect.DeepEqual(again.Batch, env.Batch) {
				t.Fatalf("re-encoded envelope does not decode to itself: %v", err)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
		if k, err := ParseKey(string(data)); err == nil {
			if again, err := KeyFor(k); err != nil || again != string(data) {
				t.Fatalf("ParseKey(%q) does not round-trip: %q, %v", data, again, err)
			}
		}
		c, err := ParsePayload(data)
		if err == nil {
			if vErr := c.Validate(); vErr != nil {
				t.Fatalf("parsed payload fails validation: %v", vErr)
			}
			if k, _ := KeyFor(c); k != c.Key {
				t.Fatalf("parsed payload's key %q is not its subject's %q", c.Key, k)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

// FuzzEncode: the hand-written JSON encoder writes exactly what
// encoding/json writes for the same envelope, whatever its fields hold,
// and the binary form of a batch record reads back as the envelope.
func FuzzEncode(f *testing.F) {
	f.Add("0123456789abcdef", []byte(`{"kind":"list"}`), make([]byte, 64), true, uint32(3), uint32(1000), uint8(10), false)
	f.Add("", []byte(nil), []byte{}, false, uint32(0), uint32(0), uint8(0), true)
	f.Add("a<b>&\"\\\x01é", []byte{0xff}, []byte{1}, true, uint32(1<<32-1), uint32(1<<32-1), uint8(0), false)
	f.Add("0123456789abcdef", []byte(`{"kind":"list"}`), make([]byte, 64), true, uint32(7), uint32(256), uint8(8), false)
	f.Add("0123456789abcdef", []byte{}, make([]byte, 64), true, uint32(0), uint32(1), uint8(0), true)
	f.Fuzz(func(t *testing.T, keyID string, payload, sig []byte, batch bool, index, size uint32, path uint8, nilPath bool) {
		e := Envelope{KeyID: keyID, Payload: payload, Sig: sig}
		if batch {
			e.Batch = &Batch{Index: index, Size: size}
			if !nilPath {
				e.Batch.Path = make([][32]byte, path%25)
				for i := range e.Batch.Path {
					e.Batch.Path[i][0], e.Batch.Path[i][31] = byte(i), byte(index)
				}
			}
		}
		if got, want := e.encodeText(), e.encodeJSON(); string(got) != string(want) {
			t.Fatalf("encodeText = %s\nencoding/json: %s", got, want)
		}
		if b := e.Encode(); e.binaryEncodable() {
			// The binary form holds exactly the envelope.
			w, err := decodeBinary(b)
			if err != nil || w.KeyID != e.KeyID || string(w.Payload) != string(e.Payload) || string(w.Sig) != string(e.Sig) ||
				w.Batch.Index != e.Batch.Index || w.Batch.Size != e.Batch.Size || len(w.Batch.hashes) != len(e.Batch.Path) {
				t.Fatalf("binary form %x reads back as %+v, %v", b, w, err)
			}
			for i, h := range e.Batch.Path {
				if w.Batch.hashes[i] != h {
					t.Fatalf("path hash %d reads back as %x, want %x", i, w.Batch.hashes[i], h)
				}
			}
		} else if string(b) != string(e.encodeText()) {
			t.Fatalf("Encode of a record without the binary form wrote %q", b)
		}
	})
}
