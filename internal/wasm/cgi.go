package wasm

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
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

// cgiEnv builds the function's whole environment: the RFC 3875 variables,
// HTTP_* for the request headers, and AEGIS_FUNCTION and AEGIS_VERSION.
// Nothing of the host's environment is inherited.
func cgiEnv(fn, version string, r Request) []string {
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	env := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "aegis",
		"SERVER_PROTOCOL":   proto,
		"SERVER_NAME":       r.ServerName,
		"SERVER_PORT":       r.ServerPort,
		"REQUEST_METHOD":    r.Method,
		"SCRIPT_NAME":       r.ScriptName,
		"PATH_INFO":         r.PathInfo,
		"QUERY_STRING":      r.RawQuery,
		"REQUEST_URI":       r.ScriptName + r.PathInfo,
		"AEGIS_FUNCTION":    fn,
		"AEGIS_VERSION":     version,
	}
	if r.RawQuery != "" {
		env["REQUEST_URI"] += "?" + r.RawQuery
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		env["REMOTE_ADDR"], env["REMOTE_PORT"] = host, port
	} else if r.RemoteAddr != "" {
		env["REMOTE_ADDR"] = r.RemoteAddr
	}
	if len(r.Body) > 0 || r.Header.Get("Content-Length") != "" {
		env["CONTENT_LENGTH"] = strconv.Itoa(len(r.Body))
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		env["CONTENT_TYPE"] = ct
	}
	if r.Host != "" {
		env["HTTP_HOST"] = r.Host
	}
	for name, values := range r.Header {
		key, ok := headerVar(name)
		if !ok {
			continue
		}
		sep := ", "
		if key == "HTTP_COOKIE" {
			sep = "; "
		}
		env[key] = strings.Join(values, sep)
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		if strings.IndexByte(v, 0) >= 0 {
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// headerVar maps a header name to its HTTP_* variable. Content-Type and
// Content-Length have their own variables; Proxy is dropped (httpoxy: a
// guest library could take HTTP_PROXY as its proxy setting); names with an
// underscore are dropped because X_Y and X-Y would share a variable.
func headerVar(name string) (string, bool) {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Proxy", "Host":
		return "", false
	}
	if !validToken(name) || strings.Contains(name, "_") {
		return "", false
	}
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), true
}

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
