package wasm

import (
	"context"
	"net/http"
	"time"
)

// Host serves the host module's calls for one function: key-value storage
// and outbound fetch. Arguments and results are plain data so that a
// sandboxed worker can proxy them to its supervisor. A Host need not apply
// any limit: the engine wraps it in a Guard built from the function's
// limits and allowed hosts, and so should any process that serves host
// calls for a worker it does not trust.
type Host interface {
	// KVGet returns the value stored under key, and false if there is none
	// or it has expired.
	KVGet(ctx context.Context, fn string, key []byte) (value []byte, ok bool, err error)
	// KVSet stores value under key; ttl 0 means no expiry. It fails with
	// an error wrapping ErrKVQuota if the function's keys and values would
	// then take more than quota bytes.
	KVSet(ctx context.Context, fn string, key, value []byte, ttl time.Duration, quota int64) error
	// KVDelete removes key; removing a missing key is not an error.
	KVDelete(ctx context.Context, fn string, key []byte) error
	// Fetch makes one outbound HTTP request and does not follow redirects
	// (the Guard follows them, checking each hop). A response body over
	// req.MaxResponseBytes fails with an error wrapping ErrFetchTooLarge.
	Fetch(ctx context.Context, fn string, req FetchRequest) (FetchResponse, error)
}

// FetchRequest is one outbound HTTP request.
type FetchRequest struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
	// MaxResponseBytes bounds the response body.
	MaxResponseBytes int64
}

// FetchResponse is the answer to a FetchRequest.
type FetchResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// LogFunc receives a function's log lines. stream is "stderr" (what the
// function wrote there), "log" (the host module's log call) or "error"
// (the runtime's account of a failed request, with its error id); level
// is "debug", "info", "warn" or "error".
type LogFunc func(stream, level, msg string, attrs map[string]string)

// Log streams.
const (
	StreamStderr = "stderr"
	StreamLog    = "log"
	StreamError  = "error"
)
