package wasm

import (
	"errors"
	"fmt"
	"time"
)

// PageSize is the size of a WebAssembly memory page.
const PageSize = 64 << 10

// Limits bound what one function may do. Fuel, Timeout, the request,
// response and fetch limits apply per request; KVQuotaBytes applies to the
// function's whole key-value store; MemoryPages and MaxModuleBytes are
// fixed when the module is compiled.
type Limits struct {
	// Fuel is the instruction budget of one request (see package fuel).
	Fuel int64
	// Timeout is the wall-clock deadline of one request.
	Timeout time.Duration
	// MemoryPages bounds linear memory and tables together, in 64 KiB
	// pages: tables count TableElementBytes an element (see Compile).
	MemoryPages uint32
	// MaxRequestBytes bounds the request body the function reads on stdin.
	MaxRequestBytes int64
	// MaxResponseBytes bounds what the function writes to stdout, CGI
	// headers included.
	MaxResponseBytes int64
	// FetchCount is the number of outbound fetches one request may make.
	FetchCount int
	// FetchMaxBytes bounds an outbound request body and a response body.
	FetchMaxBytes int64
	// FetchTimeout bounds one outbound fetch.
	FetchTimeout time.Duration
	// KVMaxKeyBytes and KVMaxValueBytes bound one key and one value.
	KVMaxKeyBytes   int
	KVMaxValueBytes int
	// KVQuotaBytes bounds the function's stored keys and values together.
	KVQuotaBytes int64
	// MaxModuleBytes bounds the module a deploy may upload.
	MaxModuleBytes int64
}

// DefaultLimits returns the limits a node uses when its configuration
// says nothing else: the config package's defaults are these.
func DefaultLimits() Limits {
	return Limits{
		Fuel:             1_000_000_000,
		Timeout:          5 * time.Second,
		MemoryPages:      (64 << 20) / PageSize,
		MaxRequestBytes:  1 << 20,
		MaxResponseBytes: 4 << 20,
		FetchCount:       4,
		FetchMaxBytes:    1 << 20,
		FetchTimeout:     5 * time.Second,
		KVMaxKeyBytes:    512,
		KVMaxValueBytes:  64 << 10,
		KVQuotaBytes:     4 << 20,
		MaxModuleBytes:   16 << 20,
	}
}

// maxMemoryPages is the 4 GiB a 32-bit memory can address.
const maxMemoryPages = 65536

// Validate reports every field that is out of range.
func (l Limits) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("limits: %s %s", field, fmt.Sprintf(format, args...)))
	}
	if l.Fuel <= 0 {
		bad("Fuel", "must be positive, got %d", l.Fuel)
	}
	if l.Timeout <= 0 {
		bad("Timeout", "must be positive, got %s", l.Timeout)
	}
	if l.MemoryPages == 0 || l.MemoryPages > maxMemoryPages {
		bad("MemoryPages", "must be between 1 and %d, got %d", maxMemoryPages, l.MemoryPages)
	}
	if l.MaxRequestBytes < 0 {
		bad("MaxRequestBytes", "must not be negative, got %d", l.MaxRequestBytes)
	}
	if l.MaxResponseBytes <= 0 {
		bad("MaxResponseBytes", "must be positive, got %d", l.MaxResponseBytes)
	}
	if l.FetchCount < 0 {
		bad("FetchCount", "must not be negative, got %d", l.FetchCount)
	}
	if l.FetchMaxBytes < 0 {
		bad("FetchMaxBytes", "must not be negative, got %d", l.FetchMaxBytes)
	}
	if l.FetchCount > 0 && l.FetchTimeout <= 0 {
		bad("FetchTimeout", "must be positive when fetches are allowed, got %s", l.FetchTimeout)
	}
	if l.KVMaxKeyBytes <= 0 {
		bad("KVMaxKeyBytes", "must be positive, got %d", l.KVMaxKeyBytes)
	}
	if l.KVMaxValueBytes < 0 {
		bad("KVMaxValueBytes", "must not be negative, got %d", l.KVMaxValueBytes)
	}
	if l.KVQuotaBytes < 0 {
		bad("KVQuotaBytes", "must not be negative, got %d", l.KVQuotaBytes)
	}
	if l.MaxModuleBytes <= 0 {
		bad("MaxModuleBytes", "must be positive, got %d", l.MaxModuleBytes)
	}
	return errors.Join(errs...)
}
