package wasm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors a Guard returns before calling its Host, matched with errors.Is.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrTooLarge        = errors.New("over the size limit")
	ErrHostNotAllowed  = errors.New("host not allowed")
	ErrFetchLimit      = errors.New("fetch count limit reached")
)

// maxRedirects bounds the redirects a Guard follows for one fetch.
const maxRedirects = 5

// Policy is what a function may do through the host module.
type Policy struct {
	Function string
	Limits   Limits
	// AllowedHosts are the host or host:port names fetch may reach. A name
	// without a port allows the scheme's default port (80 for http, 443
	// for https).
	AllowedHosts []string
}

// Guard enforces a Policy in front of a Host for one request: key and value
// sizes, the storage quota, the fetch count, size and timeout, the allowed
// hosts (checked again on every redirect hop, and only http and https).
// Every Host call the engine makes goes through one. It is safe for
// concurrent use.
type Guard struct {
	host   Host
	policy Policy

	mu      sync.Mutex
	fetches int
}

// NewGuard returns a Guard for one request.
func NewGuard(h Host, p Policy) *Guard { return &Guard{host: h, policy: p} }

func (g *Guard) checkKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("empty key: %w", ErrInvalidArgument)
	}
	if len(key) > g.policy.Limits.KVMaxKeyBytes {
		return fmt.Errorf("key of %d bytes, over %d: %w", len(key), g.policy.Limits.KVMaxKeyBytes, ErrTooLarge)
	}
	return nil
}

// KVGet checks the key and reads it from the function's store.
func (g *Guard) KVGet(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := g.checkKey(key); err != nil {
		return nil, false, err
	}
	return g.host.KVGet(ctx, g.policy.Function, key)
}

// KVSet checks key, value and TTL and stores them under the quota.
func (g *Guard) KVSet(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if err := g.checkKey(key); err != nil {
		return err
	}
	if len(value) > g.policy.Limits.KVMaxValueBytes {
		return fmt.Errorf("value of %d bytes, over %d: %w", len(value), g.policy.Limits.KVMaxValueBytes, ErrTooLarge)
	}
	if ttl < 0 {
		return fmt.Errorf("negative ttl: %w", ErrInvalidArgument)
	}
	return g.host.KVSet(ctx, g.policy.Function, key, value, ttl, g.policy.Limits.KVQuotaBytes)
}

// KVDelete checks the key and removes it.
func (g *Guard) KVDelete(ctx context.Context, key []byte) error {
	if err := g.checkKey(key); err != nil {
		return err
	}
	return g.host.KVDelete(ctx, g.policy.Function, key)
}

// Fetch checks and makes one outbound request, following redirects to
// allowed hosts; a redirect elsewhere is returned to the guest unfollowed.
func (g *Guard) Fetch(ctx context.Context, req FetchRequest) (FetchResponse, error) {
	g.mu.Lock()
	g.fetches++
	n := g.fetches
	g.mu.Unlock()
	if n > g.policy.Limits.FetchCount {
		return FetchResponse{}, fmt.Errorf("fetch %d of at most %d: %w", n, g.policy.Limits.FetchCount, ErrFetchLimit)
	}
	if int64(len(req.Body)) > g.policy.Limits.FetchMaxBytes {
		return FetchResponse{}, fmt.Errorf("request body of %d bytes, over %d: %w", len(req.Body), g.policy.Limits.FetchMaxBytes, ErrTooLarge)
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if !validToken(req.Method) {
		return FetchResponse{}, fmt.Errorf("method %q: %w", req.Method, ErrInvalidArgument)
	}
	u, err := g.checkURL(req.URL)
	if err != nil {
		return FetchResponse{}, err
	}
	header := http.Header{}
	for k, vs := range req.Header {
		if !validToken(k) {
			return FetchResponse{}, fmt.Errorf("header name %q: %w", k, ErrInvalidArgument)
		}
		if hopByHop(k) || strings.EqualFold(k, "Host") {
			continue
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				return FetchResponse{}, fmt.Errorf("header %s value: %w", k, ErrInvalidArgument)
			}
			header.Add(k, v)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, g.policy.Limits.FetchTimeout)
	defer cancel()
	out := FetchRequest{Method: req.Method, URL: u.String(), Header: header, Body: req.Body, MaxResponseBytes: g.policy.Limits.FetchMaxBytes}
	for hop := 0; ; hop++ {
		resp, err := g.host.Fetch(ctx, g.policy.Function, out)
		if err != nil {
			if ctx.Err() != nil {
				return FetchResponse{}, fmt.Errorf("fetch %s: %w", u.Redacted(), context.DeadlineExceeded)
			}
			return FetchResponse{}, err
		}
		next, ok := g.redirect(u, resp)
		if !ok || hop == maxRedirects {
			return resp, nil
		}
		u = next
		out.URL = u.String()
		if resp.Status == http.StatusSeeOther || ((resp.Status == http.StatusMovedPermanently || resp.Status == http.StatusFound) && out.Method == http.MethodPost) {
			out.Method, out.Body = http.MethodGet, nil
		}
	}
}

// redirect returns the URL a 3xx response points at if it is allowed.
func (g *Guard) redirect(from *url.URL, resp FetchResponse) (*url.URL, bool) {
	switch resp.Status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, false
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, false
	}
	next, err := from.Parse(loc)
	if err != nil {
		return nil, false
	}
	checked, err := g.checkURL(next.String())
	if err != nil {
		return nil, false
	}
	return checked, true
}

// checkURL parses an absolute http or https URL without user info whose
// host is allowed.
func (g *Guard) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %w", ErrInvalidArgument)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url scheme %q: only http and https: %w", u.Scheme, ErrInvalidArgument)
	}
	if u.User != nil || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("url %q: want scheme://host[:port]/path without user info: %w", u.Redacted(), ErrInvalidArgument)
	}
	if !hostAllowed(u, g.policy.AllowedHosts) {
		return nil, fmt.Errorf("%s: %w", u.Host, ErrHostNotAllowed)
	}
	return u, nil
}

// hostAllowed matches host:port exactly against the allowed list, with the
// scheme's default port filled in on both sides.
func hostAllowed(u *url.URL, allowed []string) bool {
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	want := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	for _, a := range allowed {
		a = strings.ToLower(a)
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			h, p = strings.Trim(a, "[]"), defaultPort(u.Scheme)
		}
		if net.JoinHostPort(h, p) == want {
			return true
		}
	}
	return false
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

func hopByHop(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}

// validToken reports whether s is an RFC 9110 token (method, header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c <= ' ' || c == 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validFieldValue refuses control characters other than tab, so a value
// cannot split a header.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
