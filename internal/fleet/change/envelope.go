package change

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// SignatureContext starts every signed message, so a fleet change's
// signature can never pass as an eBPF object signature (which starts with
// "aegis-ebpf-object-v1\x00") or anything else, and the reverse.
const SignatureContext = "aegis-fleet-change-v1\x00"

// Envelope is a signed record as stored on the bus:
//
//	{"v":1,"key_id":"<16 hex>","payload":"<base64>","sig":"<base64>"}
//
// A record signed in a batch (SignBatch) also carries
// "batch":{"index":I,"size":N,"path":["<base64>",...]}, and its signature
// covers the batch's root instead of the payload. Such records are
// written in a binary form (binary.go); Decode reads both forms.
type Envelope struct {
	KeyID   string
	Payload []byte
	Sig     []byte
	Batch   *Batch
	// StoredKey is the KV key the record was found under, set by the
	// reader; Check refuses a payload signed for another key.
	StoredKey string
}

type wireEnvelope struct {
	V       int        `json:"v"`
	KeyID   string     `json:"key_id"`
	Payload []byte     `json:"payload"`
	Sig     []byte     `json:"sig"`
	Batch   *wireBatch `json:"batch,omitempty"`
}

// Encode returns the envelope's stored form: the binary form for a batch
// record (binary.go), otherwise its JSON form (encodeText).
func (e Envelope) Encode() []byte {
	if e.binaryEncodable() {
		return e.encodeBinary()
	}
	return e.encodeText()
}

// encodeText is json.Marshal of the envelope's wireEnvelope, written by
// hand when the key id needs no escaping (always, for a key id aegis
// made), which costs a fraction of the reflection. FuzzEncode checks that
// the two write the same bytes.
func (e Envelope) encodeText() []byte {
	if !plainJSON(e.KeyID) {
		return e.encodeJSON()
	}
	size := len(`{"v":1,"key_id":"","payload":,"sig":}`) + len(e.KeyID) +
		base64.StdEncoding.EncodedLen(len(e.Payload)) + base64.StdEncoding.EncodedLen(len(e.Sig)) + 2*len(`""`)
	if e.Batch != nil {
		size += len(`,"batch":{"index":4294967295,"size":4294967295,"path":[]}`) +
			len(e.Batch.Path)*(base64.StdEncoding.EncodedLen(sha256.Size)+len(`"",`))
	}
	b := make([]byte, 0, size)
	b = append(b, `{"v":1,"key_id":"`...)
	b = append(b, e.KeyID...)
	b = append(b, `","payload":`...)
	b = appendJSONBytes(b, e.Payload)
	b = append(b, `,"sig":`...)
	b = appendJSONBytes(b, e.Sig)
	if e.Batch != nil {
		b = append(b, `,"batch":{"index":`...)
		b = strconv.AppendUint(b, uint64(e.Batch.Index), 10)
		b = append(b, `,"size":`...)
		b = strconv.AppendUint(b, uint64(e.Batch.Size), 10)
		if len(e.Batch.Path) > 0 {
			b = append(b, `,"path":[`...)
			for i, p := range e.Batch.Path {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONBytes(b, p[:])
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// encodeJSON is Encode through encoding/json.
func (e Envelope) encodeJSON() []byte {
	w := wireEnvelope{V: 1, KeyID: e.KeyID, Payload: e.Payload, Sig: e.Sig}
	if e.Batch != nil {
		w.Batch = &wireBatch{Index: e.Batch.Index, Size: e.Batch.Size}
		for _, p := range e.Batch.Path {
			w.Batch.Path = append(w.Batch.Path, p[:])
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		panic(err) // only strings and byte slices: cannot fail
	}
	return b
}

// plainJSON reports whether json.Marshal writes s as it is, between
// quotes: printable ASCII other than the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendJSONBytes appends v as json.Marshal writes a []byte: quoted
// standard base64, or null for nil.
func appendJSONBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// Decode parses a stored record. It checks the envelope's shape only: the
// signature and payload are Check's. The envelope may share data's bytes
// (the binary form does): data must not change while it is in use.
func Decode(data []byte) (Envelope, error) {
	if len(data) > MaxRecordLen {
		return Envelope{}, malformed("%d bytes, limit %d", len(data), MaxRecordLen)
	}
	var w wireEnvelope
	if len(data) > 0 && data[0] == binaryFormat {
		var err error
		if w, err = decodeBinary(data); err != nil {
			return Envelope{}, err
		}
	} else if fast, ok := decodeCanonical(data); ok {
		w = fast
	} else if err := strictJSON(data, &w); err != nil {
		return Envelope{}, err
	}
	if w.V != 1 {
		return Envelope{}, malformed("envelope version %d, want 1", w.V)
	}
	if !validKeyID(w.KeyID) {
		return Envelope{}, malformed("key_id must be 16 lower-case hex digits")
	}
	if len(w.Sig) != ed25519.SignatureSize {
		return Envelope{}, malformed("signature is %d bytes, want %d", len(w.Sig), ed25519.SignatureSize)
	}
	if len(w.Payload) == 0 {
		return Envelope{}, malformed("empty payload")
	}
	env := Envelope{KeyID: w.KeyID, Payload: w.Payload, Sig: w.Sig}
	if w.Batch != nil {
		if w.Batch.Size == 0 || w.Batch.Size > MaxBatch || w.Batch.Index >= w.Batch.Size {
			return Envelope{}, malformed("batch index %d of size %d", w.Batch.Index, w.Batch.Size)
		}
		if n := max(len(w.Batch.Path), len(w.Batch.hashes)); n > maxPathLen {
			return Envelope{}, malformed("batch proof of %d hashes", n)
		}
		env.Batch = &Batch{Index: w.Batch.Index, Size: w.Batch.Size}
		if len(w.Batch.hashes) > 0 {
			env.Batch.Path = w.Batch.hashes
		}
		if len(w.Batch.Path) > 0 {
			env.Batch.Path = make([][sha256.Size]byte, len(w.Batch.Path))
		}
		for i, p := range w.Batch.Path {
			if len(p) != sha256.Size {
				return Envelope{}, malformed("batch proof hash of %d bytes", len(p))
			}
			env.Batch.Path[i] = [sha256.Size]byte(p)
		}
	}
	return env, nil
}

func signedMessage(payload []byte) []byte {
	msg := make([]byte, 0, len(SignatureContext)+len(payload))
	return append(append(msg, SignatureContext...), payload...)
}

// Sign completes c (its Key, KeyID and, when zero, IssuedAt from the
// clock), validates it and returns the signed envelope. The Module and
// Reconciled fields are not signed.
func Sign(c Change, key ed25519.PrivateKey) (Envelope, error) {
	id, err := signerID(key)
	if err != nil {
		return Envelope{}, err
	}
	if err := c.complete(id, time.Now().UnixNano()); err != nil {
		return Envelope{}, err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return Envelope{}, fmt.Errorf("encoding change: %w", err)
	}
	return Envelope{
		KeyID:     c.KeyID,
		Payload:   payload,
		Sig:       ed25519.Sign(key, signedMessage(payload)),
		StoredKey: c.Key,
	}, nil
}

// Peek decodes a stored record's payload without verifying it, for those
// who only read what the hub holds (the publisher's ordering check, the
// operator's listings); edges verify with a Verifier. ok is false if it
// does not decode.
func Peek(record []byte) (c Change, ok bool) {
	env, err := Decode(record)
	if err != nil {
		return Change{}, false
	}
	c, err = ParsePayload(env.Payload)
	return c, err == nil
}
