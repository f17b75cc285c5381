package functions

import (
	"fmt"
	"net"
	"path"
	"sort"
	"strings"
)

// Route is where a function answers: an optional host and a path prefix.
// A route without a host answers on every host.
type Route struct {
	// Host is lower-case, without port; empty matches any host.
	Host string
	// Prefix is a clean absolute path without a trailing slash, except
	// for the root "/".
	Prefix string
}

// String returns the route in the form ParseRoute reads.
func (r Route) String() string { return r.Host + r.Prefix }

// ParseRoute reads "[HOST]/PATH": "/api", "example.com/", "example.com/v1".
func ParseRoute(s string) (Route, error) {
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return Route{}, fmt.Errorf("invalid route %q: want [HOST]/PATH, e.g. /hello or example.com/hello", s)
	}
	host, p := strings.ToLower(s[:slash]), s[slash:]
	if host != "" {
		if err := validHost(host); err != nil {
			return Route{}, fmt.Errorf("invalid route %q: %w", s, err)
		}
	}
	if strings.ContainsAny(p, "?#%\\ \t\r\n") {
		return Route{}, fmt.Errorf("invalid route %q: the path may not contain '?', '#', '%%', '\\' or spaces", s)
	}
	// Printable ASCII only: a route is printed back to operators (a
	// terminal escape in one would run in their terminal).
	if strings.ContainsFunc(p, func(r rune) bool { return r < '!' || r > '~' }) {
		return Route{}, fmt.Errorf("invalid route %q: the path may hold printable ASCII only", s)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return Route{}, fmt.Errorf("invalid route %q: the path may not contain . or .. segments", s)
		}
	}
	clean := path.Clean(p)
	if clean != strings.TrimSuffix(p, "/") && clean != p {
		return Route{}, fmt.Errorf("invalid route %q: the path is not clean (want %s)", s, clean)
	}
	return Route{Host: host, Prefix: clean}, nil
}

// validHost accepts DNS names and IP literals (IPv6 in brackets), no port.
func validHost(h string) error {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if net.ParseIP(h[1:len(h)-1]) == nil {
			return fmt.Errorf("bad IPv6 literal %s", h)
		}
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad host name %q", h)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("bad host name %q (a port or wildcard is not allowed)", h)
			}
		}
	}
	return nil
}

// matches reports whether r serves path and, if so, splits path into the
// route's prefix (CGI SCRIPT_NAME) and the rest (PATH_INFO).
func (r Route) matches(host, p string) (scriptName, pathInfo string, ok bool) {
	if r.Host != "" && r.Host != host {
		return "", "", false
	}
	if r.Prefix == "/" {
		return "", p, true
	}
	if !strings.HasPrefix(p, r.Prefix) {
		return "", "", false
	}
	rest := p[len(r.Prefix):]
	if rest != "" && rest[0] != '/' {
		return "", "", false
	}
	return r.Prefix, rest, true
}

// routeTable is an immutable routing table from routes to targets.
type routeTable[T any] struct {
	entries []routeEntry[T]
}

type routeEntry[T any] struct {
	route  Route
	target T
}

// newRouteTable builds a table; two targets on one route are an error.
func newRouteTable[T any](routes map[Route]T) *routeTable[T] {
	t := &routeTable[T]{}
	for r, target := range routes {
		t.entries = append(t.entries, routeEntry[T]{r, target})
	}
	// Most specific first: a route naming the host beats a host-less one,
	// then the longer prefix wins; the route text breaks ties so lookups
	// are deterministic.
	sort.Slice(t.entries, func(i, j int) bool {
		a, b := t.entries[i].route, t.entries[j].route
		if (a.Host != "") != (b.Host != "") {
			return a.Host != ""
		}
		if len(a.Prefix) != len(b.Prefix) {
			return len(a.Prefix) > len(b.Prefix)
		}
		return a.String() < b.String()
	})
	return t
}

// routeMatch is the result of a lookup.
type routeMatch[T any] struct {
	Route      Route
	Target     T
	ScriptName string
	PathInfo   string
}

// Lookup finds the route for a request's Host header and path.
func (t *routeTable[T]) Lookup(hostHeader, p string) (routeMatch[T], bool) {
	host := strings.ToLower(hostHeader)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	host = strings.TrimSuffix(host, ".")
	if p == "" {
		p = "/"
	}
	for _, e := range t.entries {
		if sn, pi, ok := e.route.matches(host, p); ok {
			return routeMatch[T]{Route: e.route, Target: e.target, ScriptName: sn, PathInfo: pi}, true
		}
	}
	return routeMatch[T]{}, false
}
