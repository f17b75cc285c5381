package fuel

import (
	"errors"
	"math"
	"testing"
)

func TestLEB128(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(*reader) (int64, error)
		want int64 // ignored when the read must fail
		ok   bool
	}{
		{"u32 zero padded", []byte{0x80, 0x00}, readU32, 0, true},
		{"u32 max", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, readU32, math.MaxUint32, true},
		{"u32 33 bits", []byte{0xff, 0xff, 0xff, 0xff, 0x1f}, readU32, 0, false},
		{"u32 six bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, readU32, 0, false},
		{"u32 truncated", []byte{0x80, 0x80}, readU32, 0, false},
		{"s32 minus one", []byte{0x7f}, readS32, -1, true},
		{"s32 min", []byte{0x80, 0x80, 0x80, 0x80, 0x78}, readS32, math.MinInt32, true},
		{"s32 max", []byte{0xff, 0xff, 0xff, 0xff, 0x07}, readS32, math.MaxInt32, true},
		{"s32 unused bits not the sign", []byte{0x80, 0x80, 0x80, 0x80, 0x70}, readS32, 0, false},
		{"s32 positive with high bits", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, readS32, 0, false},
		{"s33 type index 2^32-1", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, readS33, math.MaxUint32, true},
		{"s33 too large", []byte{0xff, 0xff, 0xff, 0xff, 0x2f}, readS33, 0, false},
		{"s64 min", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, readS64, math.MinInt64, true},
		{"s64 max", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, readS64, math.MaxInt64, true},
		{"s64 unused bits not the sign", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, readS64, 0, false},
		{"s64 eleven bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, readS64, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.read(&reader{buf: tt.in})
			if !tt.ok {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %d, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestLEB128RoundTrip: what the pass writes, it reads back.
func TestLEB128RoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 1 << 40, math.MaxInt64, math.MinInt64} {
		if got, err := readS64(&reader{buf: appendS64(nil, v)}); err != nil || got != v {
			t.Errorf("s64 %d: got %d, %v", v, got, err)
		}
	}
	for _, v := range []uint32{0, 127, 128, 1 << 21, math.MaxUint32} {
		if got, err := (&reader{buf: appendU32(nil, v)}).u32(); err != nil || got != v {
			t.Errorf("u32 %d: got %d, %v", v, got, err)
		}
	}
}

func readU32(r *reader) (int64, error) { v, err := r.u32(); return int64(v), err }
func readS32(r *reader) (int64, error) { v, err := r.s32(); return int64(v), err }
func readS33(r *reader) (int64, error) { return r.s33() }
func readS64(r *reader) (int64, error) { return r.s64() }
