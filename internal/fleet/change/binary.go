package change

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"reflect"
)

// A batch-signed record is stored in a binary form: an import sends
// every one of its records to every edge, and base64 inside JSON made
// them half as large again as their bytes (769 bytes for a /24 of a
// batch of 256, against 493). Single records stay JSON.
//
//	offset  size  field
//	0       1     binaryFormat (a JSON record starts with '{')
//	1       8     key id, raw (its 16 hex digits in the JSON form)
//	9       64    signature
//	73      4     batch index, big endian
//	77      4     batch size, big endian
//	81      1     n, the hashes in the audit path
//	82      32·n  the audit path
//	82+32·n rest  the payload, exactly as signed
const (
	binaryFormat = 0x02
	binaryHead   = 1 + 8 + ed25519.SignatureSize + 4 + 4 + 1
)

// binaryEncodable reports whether e has the binary form: a batch record
// whose key id is one aegis makes and whose fields fit it.
func (e Envelope) binaryEncodable() bool {
	return e.Batch != nil && validKeyID(e.KeyID) && len(e.Sig) == ed25519.SignatureSize &&
		len(e.Batch.Path) <= 255
}

func (e Envelope) encodeBinary() []byte {
	b := make([]byte, 0, binaryHead+len(e.Batch.Path)*sha256.Size+len(e.Payload))
	b = append(b, binaryFormat)
	b, _ = hex.AppendDecode(b, []byte(e.KeyID)) // validKeyID: 8 bytes, cannot fail
	b = append(b, e.Sig...)
	b = binary.BigEndian.AppendUint32(b, e.Batch.Index)
	b = binary.BigEndian.AppendUint32(b, e.Batch.Size)
	b = append(b, byte(len(e.Batch.Path)))
	for _, h := range e.Batch.Path {
		b = append(b, h[:]...)
	}
	return append(b, e.Payload...)
}

// decodeBinary reads the binary form into the JSON form's fields; Decode
// then applies the same rules to both. The signature and payload are
// data's own bytes, not copies: a record is read once from a message
// that is not used again, and copying it was a tenth of an edge's
// allocations during an import.
func decodeBinary(data []byte) (wireEnvelope, error) {
	if len(data) < binaryHead {
		return wireEnvelope{}, malformed("binary record of %d bytes, shorter than its %d-byte head", len(data), binaryHead)
	}
	n := int(data[binaryHead-1])
	if len(data) < binaryHead+n*sha256.Size {
		return wireEnvelope{}, malformed("binary record of %d bytes, too short for a path of %d hashes", len(data), n)
	}
	w := wireEnvelope{
		V:     1,
		KeyID: hex.EncodeToString(data[1:9]),
		Sig:   data[9 : 9+ed25519.SignatureSize : 9+ed25519.SignatureSize],
		Batch: &wireBatch{Index: binary.BigEndian.Uint32(data[73:]), Size: binary.BigEndian.Uint32(data[77:])},
	}
	path := data[binaryHead:]
	if n > 0 {
		w.Batch.hashes = make([][sha256.Size]byte, n)
		for i := range n {
			w.Batch.hashes[i] = [sha256.Size]byte(path[i*sha256.Size:])
		}
	}
	w.Payload = path[n*sha256.Size:]
	return w, nil
}

// SameRecord reports whether two stored records are the same signed
// record, in the same form or not (a batch record written as JSON before
// the binary form existed, and again now).
func SameRecord(a, b []byte) bool {
	if string(a) == string(b) {
		return true
	}
	if len(a) == 0 || len(b) == 0 || (a[0] == binaryFormat) == (b[0] == binaryFormat) {
		return false // one form: equal bytes or not the same record
	}
	ea, errA := Decode(a)
	eb, errB := Decode(b)
	return errA == nil && errB == nil && ea.KeyID == eb.KeyID && string(ea.Payload) == string(eb.Payload) &&
		string(ea.Sig) == string(eb.Sig) && reflect.DeepEqual(ea.Batch, eb.Batch)
}
