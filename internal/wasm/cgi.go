package wasm

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Request is the HTTP request a function answers, as the gateway routed
// it.
type Request struct {
	Method string
	// Host is the request's Host header.
	Host string
	// ScriptName is the route prefix that selected the function; PathInfo
	// is the rest of the path (RFC 3875 SCRIPT_NAME and PATH_INFO).
	ScriptName string
	PathInfo   string
	// RawQuery is the query string without '?'.
	RawQuery   string
	Header     http.Header
	Body       []byte
	RemoteAddr string // ip:port of the client
	Proto      string // "HTTP/1.1"
	ServerName string
	ServerPort string
}

// appendCGIEnviron builds the function's whole environment into e, in the
// form environ_get copies: the RFC 3875 variables, HTTP_* for the request
// headers, and AEGIS_FUNCTION and AEGIS_VERSION, as "NAME=value" strings
// in byte order, each followed by a NUL. Nothing of the host's environment
// is inherited. A variable whose value holds a NUL is left out. Header
// names are dropped when they are not tokens, hold an underscore (X_Y and
// X-Y would share a variable), or are Content-Type and Content-Length
// (they have their own variables), Host (HTTP_HOST is the request's Host)
// or Proxy (httpoxy: a guest library could take HTTP_PROXY as its proxy
// setting). Several values of a header are joined with ", " ("; " for
// Cookie); two header names that differ only in case give one variable,
// the smaller of the two.
//
// e's buffers are reused: a request allocates nothing once they have
// grown to its size.
func appendCGIEnviron(e *environ, fn, version string, r Request) {
	e.reset()
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	e.add("GATEWAY_INTERFACE", "CGI/1.1")
	e.add("SERVER_SOFTWARE", "aegis")
	e.add("SERVER_PROTOCOL", proto)
	e.add("SERVER_NAME", r.ServerName)
	e.add("SERVER_PORT", r.ServerPort)
	e.add("REQUEST_METHOD", r.Method)
	e.add("SCRIPT_NAME", r.ScriptName)
	e.add("PATH_INFO", r.PathInfo)
	e.add("QUERY_STRING", r.RawQuery)
	if !hasNUL(r.ScriptName) && !hasNUL(r.PathInfo) && !hasNUL(r.RawQuery) {
		e.open("REQUEST_URI")
		e.scratch = append(e.scratch, r.ScriptName...)
		e.scratch = append(e.scratch, r.PathInfo...)
		if r.RawQuery != "" {
			e.scratch = append(e.scratch, '?')
			e.scratch = append(e.scratch, r.RawQuery...)
		}
		e.close()
	}
	e.add("AEGIS_FUNCTION", fn)
	e.add("AEGIS_VERSION", version)
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.add("REMOTE_ADDR", host)
		e.add("REMOTE_PORT", port)
	} else if r.RemoteAddr != "" {
		e.add("REMOTE_ADDR", r.RemoteAddr)
	}
	if len(r.Body) > 0 || r.Header.Get("Content-Length") != "" {
		e.open("CONTENT_LENGTH")
		e.scratch = strconv.AppendInt(e.scratch, int64(len(r.Body)), 10)
		e.close()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		e.add("CONTENT_TYPE", ct)
	}
	if r.Host != "" {
		e.add("HTTP_HOST", r.Host)
	}
	for name, values := range r.Header {
		if !headerBecomesVar(name) || slices.ContainsFunc(values, hasNUL) {
			continue
		}
		start := len(e.scratch)
		e.scratch = append(e.scratch, "HTTP_"...)
		for i := 0; i < len(name); i++ {
			c := name[i]
			switch {
			case c == '-':
				c = '_'
			case 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
			}
			e.scratch = append(e.scratch, c)
		}
		e.scratch = append(e.scratch, '=')
		sep := ", "
		if strings.EqualFold(name, "Cookie") {
			sep = "; "
		}
		for i, v := range values {
			if i > 0 {
				e.scratch = append(e.scratch, sep...)
			}
			e.scratch = append(e.scratch, v...)
		}
		e.spans = append(e.spans, span{start, len(e.scratch)})
	}
	e.finish()
}

// headerBecomesVar reports whether a request header has an HTTP_*
// variable (see appendCGIEnviron).
func headerBecomesVar(name string) bool {
	for _, own := range [...]string{"Content-Type", "Content-Length", "Proxy", "Host"} {
		if strings.EqualFold(name, own) {
			return false
		}
	}
	return validToken(name) && strings.IndexByte(name, '_') < 0
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// errCGI marks a function's stdout that is not a CGI response.
var errCGI = errors.New("malformed CGI response")

// droppedResponseHeaders are headers a function may not set: framing is
// the gateway's, and aegis-error is how the platform, not a function,
// reports a failure.
var droppedResponseHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Upgrade": true, "Te": true,
	"Trailer": true, "Content-Length": true, "Proxy-Connection": true, "Aegis-Error": true,
}

// ParseCGIResponse reads a function's stdout (RFC 3875 section 6): header
// lines "Name: value" ended by LF or CRLF, an empty line, then the body.
// At least one header is required. "Status: NNN reason" sets the status
// (200 to 599); a Location without Status means 302; otherwise 200.
// Continuation lines, header names that are not tokens and values with
// control characters are errors. Framing headers and aegis-error are
// dropped.
func ParseCGIResponse(out []byte) (status int, header http.Header, body []byte, err error) {
	header = http.Header{}
	rest := out
	lines := 0
	for {
		line, next, ok := cutLine(rest)
		if !ok {
			return 0, nil, nil, fmt.Errorf("%w: no empty line after the headers", errCGI)
		}
		rest = next
		if line == "" {
			break
		}
		lines++
		if line[0] == ' ' || line[0] == '\t' {
			return 0, nil, nil, fmt.Errorf("%w: continuation line %q", errCGI, truncate(line, 64))
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !validToken(name) {
			return 0, nil, nil, fmt.Errorf("%w: header line %q", errCGI, truncate(line, 64))
		}
		value = strings.Trim(value, " \t")
		if !validFieldValue(value) {
			return 0, nil, nil, fmt.Errorf("%w: header %s has a control character", errCGI, name)
		}
		name = http.CanonicalHeaderKey(name)
		if name == "Status" {
			if status != 0 {
				return 0, nil, nil, fmt.Errorf("%w: two Status headers", errCGI)
			}
			code, _, _ := strings.Cut(value, " ")
			status, err = strconv.Atoi(code)
			if err != nil || len(code) != 3 || status < 200 || status > 599 {
				return 0, nil, nil, fmt.Errorf("%w: Status %q, want a code from 200 to 599", errCGI, truncate(value, 64))
			}
			continue
		}
		if droppedResponseHeaders[name] {
			continue
		}
		header.Add(name, value)
	}
	if lines == 0 {
		return 0, nil, nil, fmt.Errorf("%w: no header before the empty line", errCGI)
	}
	if status == 0 {
		status = http.StatusOK
		if header.Get("Location") != "" {
			status = http.StatusFound
		}
	}
	return status, header, rest, nil
}
