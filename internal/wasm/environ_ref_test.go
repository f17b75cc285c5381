package wasm

import (
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// referenceCGIEnv is the environment builder appendCGIEnviron replaced: a
// map of variables, then "NAME=value" strings sorted. It stays as the
// reference FuzzCGIEnviron holds the builder to.
func referenceCGIEnv(fn, version string, r Request) []string {
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
		key, ok := referenceHeaderVar(name)
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

func referenceHeaderVar(name string) (string, bool) {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Proxy", "Host":
		return "", false
	}
	if !validToken(name) || strings.Contains(name, "_") {
		return "", false
	}
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), true
}
