package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// Entries and the fleet follower's per-key memory are stored in a small
// binary form: an import writes a hundred thousand of each, and
// encoding/json was most of the store's CPU for them. Schema 1 stored
// them as JSON; a JSON value starts with '{', which no binary form does,
// so values written by schema 1 are still read as they are.
const (
	entryFormat   = 1 // the first byte of a binary entry
	appliedFormat = 1 // the first byte of a binary change.Applied
)

// Flags of a binary entry.
const (
	entryHasCreated = 1 << iota
	entryHasExpires
)

// Flags of a binary change.Applied.
const (
	appliedDeleted = 1 << iota
	appliedByController
)

// entryFixedLen is the length of a binary entry before its times and
// strings: format, list, flags, key, rule id.
const entryFixedLen = 3 + keyLen + 4

// appendEntry appends the binary form of e, a normalized entry (masked
// prefix, times within minTime and maxTime, reason at most
// lists.MaxReasonLen bytes).
//
//	format (1) · list id (1) · flags (1) · encodeKey(prefix) (18) · rule id (4, big endian)
//	[created, Unix ns (8)] [expires, Unix ns (8)] · reason, origin, signer: each a uvarint length and bytes
func appendEntry(b []byte, e *Entry) []byte {
	var flags byte
	if !e.Created.IsZero() {
		flags |= entryHasCreated
	}
	if !e.Expires.IsZero() {
		flags |= entryHasExpires
	}
	b = append(b, entryFormat, listID(e.List), flags)
	b = appendKey(b, e.Prefix)
	b = binary.BigEndian.AppendUint32(b, e.RuleID)
	if flags&entryHasCreated != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(e.Created.UnixNano()))
	}
	if flags&entryHasExpires != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(e.Expires.UnixNano()))
	}
	for _, s := range []string{e.Reason, e.Origin, e.Signer} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// entrySize is the length of e's binary form, or more.
func entrySize(e *Entry) int {
	return entryFixedLen + 2*8 + 3*binary.MaxVarintLen64 + len(e.Reason) + len(e.Origin) + len(e.Signer)
}

var errCorrupt = errors.New("corrupt value")

// decodeEntry reads a stored entry in either form.
func decodeEntry(v []byte, e *Entry) error {
	if len(v) > 0 && v[0] == '{' {
		*e = Entry{}
		return json.Unmarshal(v, e)
	}
	if len(v) < entryFixedLen || v[0] != entryFormat {
		return fmt.Errorf("%w: not an entry", errCorrupt)
	}
	l, ok := listByID(v[1])
	if !ok {
		return fmt.Errorf("%w: list id %d", errCorrupt, v[1])
	}
	flags := v[2]
	if flags&^(entryHasCreated|entryHasExpires) != 0 {
		return fmt.Errorf("%w: entry flags %#x", errCorrupt, flags)
	}
	p, err := decodeKey(v[3 : 3+keyLen])
	if err != nil {
		return err
	}
	*e = Entry{List: l, Prefix: p, RuleID: binary.BigEndian.Uint32(v[3+keyLen:])}
	rest := v[entryFixedLen:]
	for _, t := range []struct {
		flag byte
		v    *time.Time
	}{{entryHasCreated, &e.Created}, {entryHasExpires, &e.Expires}} {
		if flags&t.flag == 0 {
			continue
		}
		if len(rest) < 8 {
			return fmt.Errorf("%w: entry cut short", errCorrupt)
		}
		ns := binary.BigEndian.Uint64(rest)
		if ns > math.MaxInt64 {
			return fmt.Errorf("%w: time out of range", errCorrupt)
		}
		*t.v = time.Unix(0, int64(ns)).UTC()
		rest = rest[8:]
	}
	for _, s := range []*string{&e.Reason, &e.Origin, &e.Signer} {
		n, used := binary.Uvarint(rest)
		if used <= 0 || n > uint64(len(rest)-used) {
			return fmt.Errorf("%w: entry cut short", errCorrupt)
		}
		if n > 0 {
			*s = string(rest[used : used+int(n)])
		}
		rest = rest[used+int(n):]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after an entry", errCorrupt, len(rest))
	}
	return nil
}

// appendKey appends encodeKey(p).
func appendKey(b []byte, p netip.Prefix) []byte {
	a := p.Addr()
	if a.Is4() {
		a4 := a.As4()
		b = append(b, 4)
		b = append(b, a4[:]...)
		b = append(b, make([]byte, 12)...)
	} else {
		a16 := a.As16()
		b = append(b, 6)
		b = append(b, a16[:]...)
	}
	return append(b, byte(p.Bits()))
}

// decodeKey reverses encodeKey; it refuses what encodeKey cannot write.
func decodeKey(k []byte) (netip.Prefix, error) {
	if len(k) != keyLen {
		return netip.Prefix{}, fmt.Errorf("%w: key of %d bytes", errCorrupt, len(k))
	}
	var a netip.Addr
	switch k[0] {
	case 4:
		if [12]byte(k[5:17]) != ([12]byte{}) {
			return netip.Prefix{}, fmt.Errorf("%w: IPv4 key %x", errCorrupt, k)
		}
		a = netip.AddrFrom4([4]byte(k[1:5]))
	case 6:
		a = netip.AddrFrom16([16]byte(k[1:17]))
	default:
		return netip.Prefix{}, fmt.Errorf("%w: key family %d", errCorrupt, k[0])
	}
	p := netip.PrefixFrom(a, int(k[17]))
	if !p.IsValid() || p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%w: key %x", errCorrupt, k)
	}
	return p, nil
}

// appliedLen is the length of a binary change.Applied.
const appliedLen = 18

// appendApplied appends the binary form of a:
//
//	format (1) · flags (1) · issued_at (8) · expires_at (8), big endian
func appendApplied(b []byte, a change.Applied) []byte {
	var flags byte
	if a.Deleted {
		flags |= appliedDeleted
	}
	if a.ByController {
		flags |= appliedByController
	}
	b = append(b, appliedFormat, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(a.IssuedAt))
	return binary.BigEndian.AppendUint64(b, uint64(a.ExpiresAt))
}

// decodeApplied reads a stored change.Applied in either form.
func decodeApplied(v []byte, a *change.Applied) error {
	if len(v) > 0 && v[0] == '{' {
		*a = change.Applied{}
		return json.Unmarshal(v, a)
	}
	if len(v) != appliedLen || v[0] != appliedFormat || v[1]&^(appliedDeleted|appliedByController) != 0 {
		return fmt.Errorf("%w: not a fleet state record", errCorrupt)
	}
	*a = change.Applied{
		Deleted:      v[1]&appliedDeleted != 0,
		ByController: v[1]&appliedByController != 0,
		IssuedAt:     int64(binary.BigEndian.Uint64(v[2:])),
		ExpiresAt:    int64(binary.BigEndian.Uint64(v[10:])),
	}
	return nil
}
