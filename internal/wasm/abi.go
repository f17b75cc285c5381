package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Code is the i32 a host function returns to the guest: a length or zero
// on success, a negative code on failure. docs/ABI.md lists them; the
// guest SDKs repeat them.
type Code int32

// Host function result codes.
const (
	CodeOK          Code = 0
	CodeNotFound    Code = -1 // kv_get: no such key
	CodeInvalid     Code = -2 // malformed argument: empty key, bad URL or encoding, negative TTL
	CodeTooLarge    Code = -3 // key, value, fetch body or response over its limit
	CodeQuota       Code = -4 // kv_set: the function's storage quota would be exceeded
	CodeDenied      Code = -5 // http_fetch: host not in the function's allowed hosts
	CodeLimit       Code = -6 // http_fetch: the request's fetch count is used up
	CodeTimeout     Code = -7 // http_fetch: the fetch timeout or request deadline passed
	CodeUnavailable Code = -8 // the store or network failed; retrying may help
)

// codeOf maps a host call error to the code the guest sees.
func codeOf(err error) Code {
	switch {
	case err == nil:
		return CodeOK
	case errors.Is(err, ErrInvalidArgument):
		return CodeInvalid
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrFetchTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrKVQuota):
		return CodeQuota
	case errors.Is(err, ErrHostNotAllowed):
		return CodeDenied
	case errors.Is(err, ErrFetchLimit):
		return CodeLimit
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return CodeTimeout
	default:
		return CodeUnavailable
	}
}

// DecodeFetchRequest reads the http_fetch request encoding:
//
//	METHOD SP URL LF
//	(Name: value LF)*
//	LF
//	body
//
// A CR before an LF is ignored. It checks the framing only; the Guard
// checks method, URL and header values.
func DecodeFetchRequest(b []byte) (FetchRequest, error) {
	line, rest, ok := cutLine(b)
	if !ok {
		return FetchRequest{}, fmt.Errorf("fetch request: no request line: %w", ErrInvalidArgument)
	}
	method, target, ok := strings.Cut(line, " ")
	if !ok || !validToken(method) || target == "" || strings.ContainsAny(target, " \t") || !validFieldValue(target) {
		return FetchRequest{}, fmt.Errorf("fetch request: want \"METHOD URL\", got %q: %w", line, ErrInvalidArgument)
	}
	header, body, err := decodeHeader(rest)
	if err != nil {
		return FetchRequest{}, fmt.Errorf("fetch request: %w", err)
	}
	return FetchRequest{Method: method, URL: target, Header: header, Body: body}, nil
}

// EncodeFetchRequest is the inverse of DecodeFetchRequest, for guest SDKs
// written in Go and for tests.
func EncodeFetchRequest(r FetchRequest) []byte {
	var b bytes.Buffer
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	b.WriteString(method + " " + r.URL + "\n")
	writeHeader(&b, r.Header)
	b.Write(r.Body)
	return b.Bytes()
}

// EncodeFetchResponse writes the encoding http_fetch hands the guest:
//
//	STATUS LF
//	(Name: value LF)*
//	LF
//	body
//
// Header names are canonical and sorted.
func EncodeFetchResponse(r FetchResponse) []byte {
	var b bytes.Buffer
	b.WriteString(strconv.Itoa(r.Status) + "\n")
	writeHeader(&b, r.Header)
	b.Write(r.Body)
	return b.Bytes()
}

// DecodeFetchResponse is the inverse of EncodeFetchResponse.
func DecodeFetchResponse(b []byte) (FetchResponse, error) {
	line, rest, ok := cutLine(b)
	if !ok {
		return FetchResponse{}, fmt.Errorf("fetch response: no status line: %w", ErrInvalidArgument)
	}
	status, err := strconv.Atoi(line)
	if err != nil || status < 100 || status > 999 {
		return FetchResponse{}, fmt.Errorf("fetch response: status %q: %w", line, ErrInvalidArgument)
	}
	header, body, err := decodeHeader(rest)
	if err != nil {
		return FetchResponse{}, fmt.Errorf("fetch response: %w", err)
	}
	return FetchResponse{Status: status, Header: header, Body: body}, nil
}

func writeHeader(b *bytes.Buffer, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(http.CanonicalHeaderKey(k) + ": " + v + "\n")
		}
	}
	b.WriteString("\n")
}

// decodeHeader reads "Name: value" lines up to an empty line and returns
// what follows it as the body.
func decodeHeader(b []byte) (http.Header, []byte, error) {
	h := http.Header{}
	for {
		line, rest, ok := cutLine(b)
		if !ok {
			return nil, nil, fmt.Errorf("header block not ended by an empty line: %w", ErrInvalidArgument)
		}
		b = rest
		if line == "" {
			return h, b, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !validToken(name) {
			return nil, nil, fmt.Errorf("header line %q: %w", truncate(line, 64), ErrInvalidArgument)
		}
		value = strings.Trim(value, " \t")
		if !validFieldValue(value) {
			return nil, nil, fmt.Errorf("header %s: control character in value: %w", name, ErrInvalidArgument)
		}
		h.Add(name, value)
	}
}

// cutLine splits b after its first LF, dropping a CR before it.
func cutLine(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return "", nil, false
	}
	return string(bytes.TrimSuffix(b[:i], []byte{'\r'})), b[i+1:], true
}

// DecodeLogAttrs reads the log call's attributes: "key=value" lines, LF
// separated, the last LF optional. Keys are non-empty and without '='.
func DecodeLogAttrs(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	attrs := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("log attribute %q: want key=value: %w", truncate(line, 64), ErrInvalidArgument)
		}
		attrs[k] = v
	}
	return attrs, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
