package fuel

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// errEOF is the cause of every read past the end of the input.
var errEOF = errors.New("unexpected end")

// reader decodes the primitive encodings of the binary format from buf.
// Every method fails on truncation and on over-long or out-of-range LEB128
// (the spec's limits: 5 bytes for 32 bits, 10 for 64), so a value that
// decodes here decodes the same in any conforming runtime.
type reader struct {
	buf  []byte
	pos  int
	base int // offset of buf in the module, for error messages
}

// sub returns a reader of b, which r's last read returned.
func (r *reader) sub(b []byte) *reader {
	return &reader{buf: b, base: r.base + r.pos - len(b)}
}

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrMalformed, r.base+r.pos, fmt.Sprintf(format, args...))
}

func (r *reader) eof() error {
	return fmt.Errorf("%w at offset %d: %w", ErrMalformed, r.base+r.pos, errEOF)
}

func (r *reader) done() bool { return r.pos >= len(r.buf) }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.buf) {
		return 0, r.eof()
	}
	b := r.buf[r.pos]
	r.pos++
	return b, nil
}

func (r *reader) peek() (byte, error) {
	if r.pos >= len(r.buf) {
		return 0, r.eof()
	}
	return r.buf[r.pos], nil
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.buf)-r.pos) {
		return nil, r.eof()
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

func (r *reader) skip(n int) error {
	if n > len(r.buf)-r.pos {
		return r.eof()
	}
	r.pos += n
	return nil
}

// leb reads an LEB128 number of at most bits significant bits. It returns
// the raw value and whether it is signed-negative; for signed numbers the
// unused bits of the last byte must repeat the sign bit, for unsigned ones
// they must be zero.
func (r *reader) leb(bits uint, signed bool) (uint64, error) {
	maxBytes := int((bits + 6) / 7)
	var v uint64
	var shift uint
	for i := 0; ; i++ {
		b, err := r.byte()
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			if b&0x80 != 0 {
				return 0, r.errorf("integer representation too long")
			}
			// used is how many of the last byte's 7 bits carry value.
			used := bits - shift
			rest := b >> used // the unused high bits
			if signed {
				// The sign bit (bit used-1) and the unused bits agree.
				if sign := (b >> (used - 1)) & 1; (sign == 0 && rest != 0) || (sign == 1 && rest != 0x7f>>used) {
					return 0, r.errorf("integer too large")
				}
			} else if rest != 0 {
				return 0, r.errorf("integer too large")
			}
		}
		v |= uint64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			if signed && shift < 64 && b&0x40 != 0 {
				v |= ^uint64(0) << shift
			}
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.leb(32, false)
	return uint32(v), err
}

func (r *reader) s32() (int32, error) {
	v, err := r.leb(32, true)
	return int32(v), err
}

func (r *reader) s33() (int64, error) {
	v, err := r.leb(33, true)
	return int64(v), err
}

func (r *reader) s64() (int64, error) {
	v, err := r.leb(64, true)
	return int64(v), err
}

// count reads a vector length and rejects one that cannot fit in the rest
// of the input at minSize bytes per element, so no caller allocates or
// loops on a length the input does not back.
func (r *reader) count(minSize int) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.buf)-r.pos) {
		return 0, r.errorf("vector of %d elements exceeds the input", n)
	}
	return n, nil
}

// name reads a length-prefixed UTF-8 name.
func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", r.errorf("name is not valid UTF-8")
	}
	return string(b), nil
}

// appendU32 appends v as unsigned LEB128.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS64 appends v as signed LEB128.
func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
