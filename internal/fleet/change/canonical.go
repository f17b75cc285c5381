package change

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"unicode/utf8"
)

// decodeCanonical reads an envelope written exactly as Encode writes it
// (json.Marshal of wireEnvelope: fixed field order, no spaces, no escapes
// in these fields). Every record aegis writes has that form, and reading
// it by hand costs a fraction of encoding/json's reflection, which was
// most of an edge's cost per record in a large import. Anything else —
// another field order, spaces, escapes, unknown fields — returns ok false
// and goes to the general strict decoder, so the set of records accepted
// is the same (FuzzDecode checks that the two agree).
func decodeCanonical(data []byte) (w wireEnvelope, ok bool) {
	// The payload and signature share one buffer, large enough for all of
	// what comes before the batch's proof, so a record costs one
	// allocation for its bytes instead of one per field; the proof's
	// hashes are decoded into their own array.
	head := len(data)
	if i := bytes.Index(data, []byte(`,"batch":`)); i >= 0 {
		head = i
	}
	r := canonReader{b: data, arena: make([]byte, 0, base64.StdEncoding.DecodedLen(head))}
	var v uint32
	if !r.lit(`{"v":`) || !r.uint(&v) || !r.lit(`,"key_id":"`) {
		return w, false
	}
	w.V = int(v)
	id, ok := r.hexString()
	if !ok || !r.lit(`,"payload":`) {
		return w, false
	}
	w.KeyID = id
	if w.Payload, ok = r.base64(); !ok || !r.lit(`,"sig":`) {
		return w, false
	}
	if w.Sig, ok = r.base64(); !ok {
		return w, false
	}
	if r.lit(`}`) {
		return w, r.done()
	}
	w.Batch = &wireBatch{}
	if !r.lit(`,"batch":{"index":`) || !r.uint(&w.Batch.Index) || !r.lit(`,"size":`) || !r.uint(&w.Batch.Size) {
		return w, false
	}
	if r.lit(`}}`) {
		return w, r.done()
	}
	if !r.lit(`,"path":[`) {
		return w, false
	}
	// The rest is base64 strings, which hold no comma, and the closing
	// brackets: counting commas sizes the path exactly.
	w.Batch.hashes = make([][sha256.Size]byte, 0, min(bytes.Count(r.b[r.i:], []byte(",")), maxPathLen)+1)
	for {
		var h [sha256.Size]byte
		if !r.hash(&h) {
			return w, false
		}
		w.Batch.hashes = append(w.Batch.hashes, h)
		if r.lit(`]}}`) {
			return w, r.done()
		}
		if !r.lit(`,`) {
			return w, false
		}
	}
}

type canonReader struct {
	b     []byte
	i     int
	arena []byte // decoded bytes; never grown, so earlier fields stay put
}

func (r *canonReader) done() bool { return r.i == len(r.b) }

func (r *canonReader) lit(s string) bool {
	if !bytes.HasPrefix(r.b[r.i:], []byte(s)) {
		return false
	}
	r.i += len(s)
	return true
}

// uint reads a decimal as json.Marshal writes one: no sign, no leading
// zero, within uint32.
func (r *canonReader) uint(v *uint32) bool {
	start, n := r.i, uint64(0)
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		n = n*10 + uint64(r.b[r.i]-'0')
		if n > 1<<32-1 {
			return false
		}
		r.i++
	}
	digits := r.i - start
	if digits == 0 || digits > 1 && r.b[start] == '0' {
		return false
	}
	*v = uint32(n)
	return true
}

// hexString reads lower-case hex digits up to the closing quote.
func (r *canonReader) hexString() (string, bool) {
	start := r.i
	for r.i < len(r.b) && (r.b[r.i] >= '0' && r.b[r.i] <= '9' || r.b[r.i] >= 'a' && r.b[r.i] <= 'f') {
		r.i++
	}
	s := string(r.b[start:r.i])
	return s, r.lit(`"`)
}

// base64 reads a quoted standard base64 string, as json.Marshal writes a
// []byte, and decodes it as encoding/json does.
func (r *canonReader) base64() ([]byte, bool) {
	if !r.lit(`"`) {
		return nil, false
	}
	end := bytes.IndexByte(r.b[r.i:], '"')
	if end < 0 {
		return nil, false
	}
	src := r.b[r.i : r.i+end]
	// The base64 decoder refuses every byte outside the alphabet but
	// skips CR and LF, which a JSON string cannot hold raw.
	if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
		return nil, false
	}
	r.i += end + 1
	start, end := len(r.arena), len(r.arena)+base64.StdEncoding.DecodedLen(len(src))
	if end > cap(r.arena) {
		return nil, false // not the canonical form (the arena holds what comes before the batch): the strict decoder decides
	}
	n, err := base64.StdEncoding.Decode(r.arena[start:end], src)
	if err != nil {
		return nil, false
	}
	r.arena = r.arena[:start+n]
	return r.arena[start : start+n : start+n], true
}

// hash reads a quoted base64 string of exactly one proof hash, as
// json.Marshal writes it, into h.
func (r *canonReader) hash(h *[sha256.Size]byte) bool {
	const n = 44 // base64 of 32 bytes, padded
	if !r.lit(`"`) || len(r.b)-r.i < n+1 || r.b[r.i+n] != '"' {
		return false
	}
	src := r.b[r.i : r.i+n]
	if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
		return false // skipped by the decoder, never raw in a JSON string
	}
	var buf [sha256.Size + 1]byte // DecodedLen(44): the decoder may need it
	got, err := base64.StdEncoding.Decode(buf[:], src)
	if err != nil || got != sha256.Size {
		return false
	}
	*h = [sha256.Size]byte(buf[:sha256.Size])
	r.i += n + 1
	return true
}

// parseCanonicalList reads a list change's payload written exactly as
// json.Marshal writes a Change (the fields in declaration order, no
// spaces, no escapes): the bulk of an import. Any other payload — another
// kind, an escape in the reason, another order — returns ok false and goes
// to the strict JSON decoder; FuzzDecode checks the two agree.
func parseCanonicalList(data []byte) (c Change, ok bool) {
	r := canonReader{b: data}
	if !r.lit(`{"kind":"list","op":"`) {
		return c, false
	}
	c.Kind = KindList
	var s string
	if s, ok = r.oneOf(string(OpPut), string(OpDelete)); !ok || !r.lit(`,"key":"`) {
		return c, false
	}
	c.Op = Op(s)
	if c.Key, ok = r.plainString(); !ok || !r.lit(`,"list":"`) {
		return c, false
	}
	if s, ok = r.oneOf(string(Blocklist), string(Allowlist)); !ok || !r.lit(`,"prefix":"`) {
		return c, false
	}
	c.List = List(s)
	if s, ok = r.plainString(); !ok {
		return c, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return c, false
	}
	c.Prefix = p
	if r.lit(`,"reason":"`) {
		if c.Reason, ok = r.plainString(); !ok || c.Reason == "" {
			return c, false
		}
	}
	if !r.lit(`,"issued_at":`) || !r.int64(&c.IssuedAt) {
		return c, false
	}
	if r.lit(`,"expires_at":`) {
		if !r.int64(&c.ExpiresAt) || c.ExpiresAt == 0 {
			return c, false
		}
	}
	if !r.lit(`,"key_id":"`) {
		return c, false
	}
	if c.KeyID, ok = r.plainString(); !ok || !r.lit(`}`) {
		return c, false
	}
	return c, r.done()
}

// plainString reads a JSON string's body up to its closing quote when it
// needs no unescaping: valid UTF-8, no control characters, no backslash.
func (r *canonReader) plainString() (string, bool) {
	start := r.i
	for r.i < len(r.b) && r.b[r.i] != '"' {
		if c := r.b[r.i]; c < 0x20 || c == '\\' {
			return "", false
		}
		r.i++
	}
	s := r.b[start:r.i]
	if !utf8.Valid(s) || !r.lit(`"`) {
		return "", false
	}
	return string(s), true
}

// oneOf reads a string body that is one of choices and returns that
// choice, which costs no allocation; anything else is ok false (and goes
// to the strict decoder, which reports it).
func (r *canonReader) oneOf(choices ...string) (string, bool) {
	end := bytes.IndexByte(r.b[r.i:], '"')
	if end < 0 {
		return "", false
	}
	for _, c := range choices {
		if string(r.b[r.i:r.i+end]) == c {
			r.i += end + 1
			return c, true
		}
	}
	return "", false
}

// int64 reads a decimal as json.Marshal writes a non-negative int64.
func (r *canonReader) int64(v *int64) bool {
	start, n := r.i, int64(0)
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		d := int64(r.b[r.i] - '0')
		if n > (1<<63-1-d)/10 {
			return false
		}
		n = n*10 + d
		r.i++
	}
	digits := r.i - start
	if digits == 0 || digits > 1 && r.b[start] == '0' {
		return false
	}
	*v = n
	return true
}
