package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// Report is one message on the bus: edge Edge blocked Prefix
// automatically at At, until Until (zero: no expiry).
type Report struct {
	Prefix netip.Prefix `json:"prefix"`
	At     time.Time    `json:"at"`
	Until  time.Time    `json:"until,omitzero"`
	Edge   string       `json:"edge"`
}

// Encode returns the report's wire form.
func (r Report) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a prefix, times and a string: cannot fail
	}
	return b
}

// maxSize bounds a report's wire form; hub.MaxReportSize bounds the
// message on the bus.
const maxSize = 1 << 10

// Parse decodes a report strictly (no unknown fields, nothing after the
// object) and checks it: a canonical prefix, a valid edge name, a time,
// and an expiry after it if any.
func Parse(data []byte) (Report, error) {
	if len(data) > maxSize {
		return Report{}, fmt.Errorf("report of %d bytes, limit %d", len(data), maxSize)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("decoding report: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Report{}, errors.New("decoding report: data after the JSON object")
	}
	if c, err := Canonical(r.Prefix); err != nil || c != r.Prefix {
		return Report{}, fmt.Errorf("report prefix %s is not canonical", r.Prefix)
	}
	if err := change.ValidEdgeName(r.Edge); err != nil {
		return Report{}, err
	}
	if r.At.IsZero() {
		return Report{}, errors.New("report has no time")
	}
	if !r.Until.IsZero() && !r.Until.After(r.At) {
		return Report{}, errors.New("report expires before it was made")
	}
	return r, nil
}

// Canonical returns p in the form fleet keys use: an IPv4-mapped IPv6
// prefix as IPv4, masked. A zone or an invalid prefix is an error.
func Canonical(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %s has a zone", p)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %s spans beyond the IPv4-mapped range", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
