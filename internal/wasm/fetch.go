package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// HTTPFetcher is the default Fetcher, on net/http. It never follows
// redirects (the Guard does, checking each hop) and by default refuses to
// connect to loopback, private, link-local and other non-public addresses,
// whatever name resolved to them, so an allowed host name cannot be
// pointed at the node's own services.
type HTTPFetcher struct {
	client *http.Client
}

// FetcherOptions configure an HTTPFetcher.
type FetcherOptions struct {
	// AllowPrivateAddrs lets fetches reach loopback and private addresses
	// (tests, or a node whose functions call services on its LAN).
	AllowPrivateAddrs bool
}

// NewHTTPFetcher returns a fetcher with its own connection pool.
func NewHTTPFetcher(opts FetcherOptions) *HTTPFetcher {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if !opts.AllowPrivateAddrs {
		dialer.Control = refusePrivate
	}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	return &HTTPFetcher{client: &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// errPrivateAddr is returned when a fetch resolves to a non-public address.
var errPrivateAddr = errors.New("address is not public")

func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", address, err)
	}
	a := ap.Addr().Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || isSharedOrReserved(a) {
		return fmt.Errorf("dialing %s: %w", address, errPrivateAddr)
	}
	return nil
}

// nonPublic lists ranges IsGlobalUnicast and IsPrivate do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved
	netip.MustParsePrefix("64:ff9b::/96"),  // NAT64 can reach IPv4 private ranges
	netip.MustParsePrefix("2001:db8::/32"), // documentation
}

func isSharedOrReserved(a netip.Addr) bool {
	for _, p := range nonPublic {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, req FetchRequest) (FetchResponse, error) {
	hreq, err := http.NewRequestWithContext(ctx, req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return FetchResponse{}, fmt.Errorf("fetch: %w", err)
	}
	for k, vs := range req.Header {
		hreq.Header[k] = vs
	}
	resp, err := f.client.Do(hreq)
	if err != nil {
		return FetchResponse{}, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, req.MaxResponseBytes+1))
	if err != nil {
		return FetchResponse{}, fmt.Errorf("fetch: reading the response: %w", err)
	}
	if int64(len(body)) > req.MaxResponseBytes {
		return FetchResponse{}, fmt.Errorf("fetch: response body over %d bytes: %w", req.MaxResponseBytes, ErrFetchTooLarge)
	}
	return FetchResponse{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
