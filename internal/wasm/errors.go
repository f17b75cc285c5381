package wasm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
)

// Errors matched with errors.Is.
var (
	// ErrInvalidModule means a deploy was refused because of the module
	// itself: not valid WebAssembly, over the size limit, importing
	// something other than WASI preview 1 and the host module, not a WASI
	// command, or needing more memory than its limit.
	ErrInvalidModule = errors.New("invalid module")
	// ErrKVQuota means a KVStore.Put would take the function over its
	// quota; the guest sees CodeQuota.
	ErrKVQuota = errors.New("key-value quota exceeded")
	// ErrFetchTooLarge means an outbound response body was over the limit;
	// the guest sees CodeTooLarge.
	ErrFetchTooLarge = errors.New("fetch response over the size limit")
	// ErrClosed means the engine or module was closed.
	ErrClosed = errors.New("closed")
)

// Kind names why a request failed. It is the first word of the
// aegis-error response header.
type Kind string

// Kinds of request failure.
const (
	KindFuel         Kind = "fuel"          // the instruction budget ran out (503)
	KindTimeout      Kind = "timeout"       // the wall-clock deadline passed (503)
	KindMemory       Kind = "memory"        // the function failed after its memory limit refused a grow (503)
	KindResponseSize Kind = "response-size" // stdout went over MaxResponseBytes (503)
	KindRequestSize  Kind = "request-size"  // the request body is over MaxRequestBytes (413)
	KindTrap         Kind = "trap"          // the function trapped or exited non-zero (502)
	KindCGI          Kind = "cgi"           // stdout is not a CGI response (502)
	KindNotFound     Kind = "not-found"     // no function serves the route (404, the gateway's)
)

// Error is a failed request: its Kind, the HTTP status to answer with and,
// for failures in the function itself (trap, cgi), an ErrorID that also
// appears in the function's log so its author can find the cause.
type Error struct {
	Kind    Kind
	Status  int
	ErrorID string
	Err     error
}

func (e *Error) Error() string {
	msg := string(e.Kind)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.ErrorID != "" {
		msg += " (error id " + e.ErrorID + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Header returns the value of the aegis-error response header: the kind,
// and the error id where there is one ("trap; id=4f0c…").
func (e *Error) Header() string {
	if e.ErrorID != "" {
		return string(e.Kind) + "; id=" + e.ErrorID
	}
	return string(e.Kind)
}

// statusOf maps a kind to the status a gateway answers with.
func statusOf(k Kind) int {
	switch k {
	case KindFuel, KindTimeout, KindMemory, KindResponseSize:
		return http.StatusServiceUnavailable
	case KindRequestSize:
		return http.StatusRequestEntityTooLarge
	case KindNotFound:
		return http.StatusNotFound
	default:
		return http.StatusBadGateway
	}
}

// newError builds an Error of kind k; trap and cgi errors get a fresh id.
func newError(k Kind, err error) *Error {
	e := &Error{Kind: k, Status: statusOf(k), Err: err}
	if k == KindTrap || k == KindCGI {
		e.ErrorID = newErrorID()
	}
	return e
}

func newErrorID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func invalidModule(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidModule, fmt.Sprintf(format, args...))
}
