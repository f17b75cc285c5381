package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/aegis-edge/aegis/internal/gateway"
	"github.com/aegis-edge/aegis/internal/wasm"
)

type matchT = routeMatch[*deployment]

// ErrorHeader names the cause of a failed request in the response.
const ErrorHeader = "aegis-error"

// ServeHTTP routes a request to its function and answers with what the
// function wrote, or with a status and ErrorHeader naming why it could not.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := r.opts.Now()
	d, m, ok := r.acquire(req)
	if !ok {
		writeError(w, http.StatusNotFound, "not-found", "no function serves this host and path")
		return
	}
	defer d.release()
	d.requests.Add(1)

	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, int64(d.limits.MaxRequestBody)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request-size", fmt.Sprintf("request body over the function's %s limit", d.limits.MaxRequestBody))
			r.access(d, req, http.StatusRequestEntityTooLarge, start, 0, "request-size")
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// gateway.read_timeout passed: the client sent too slowly.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "request-timeout", "the request body did not arrive within the gateway's read timeout")
			r.access(d, req, http.StatusRequestTimeout, start, 0, "request-timeout")
			return
		}
		writeError(w, http.StatusBadRequest, "request", "reading the request body: "+err.Error())
		return
	}
	gateway.BodyRead(w, req, d.limits.Timeout.Duration)
	ctx, cancel := context.WithTimeout(req.Context(), d.limits.Timeout.Duration)
	defer cancel()
	inv := wasm.Invocation{
		Function:     d.fn.Name,
		Version:      strconv.FormatUint(d.fn.Version, 10),
		Limits:       d.wasmLimits,
		AllowedHosts: d.spec.AllowHosts,
		Host:         r.opts.Host,
		Request:      cgiRequest(req, m.ScriptName, m.PathInfo, body),
		Log: func(stream, level, msg string, attrs map[string]string) {
			r.logLine(d, stream, level, msg, attrs)
		},
	}
	resp, err := d.loaded.Serve(ctx, inv)
	if err != nil {
		status, cause := http.StatusBadGateway, "internal"
		var we *wasm.Error
		if errors.As(err, &we) {
			status, cause = we.Status, we.Header()
		}
		writeError(w, status, cause, err.Error())
		fuel := int64(0)
		if resp != nil {
			fuel = resp.FuelUsed
		}
		r.access(d, req, status, start, fuel, cause)
		return
	}
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
	r.access(d, req, resp.Status, start, resp.FuelUsed, "")
}

// acquire finds the live deployment for req and pins it. A deployment
// retired between the lookup and the pin is looked up again.
func (r *Registry) acquire(req *http.Request) (*deployment, matchT, bool) {
	for range 3 {
		m, ok := r.table.Load().Lookup(req.Host, req.URL.Path)
		if !ok {
			return nil, m, false
		}
		if m.Target.acquire() {
			return m.Target, m, true
		}
	}
	return nil, matchT{}, false
}

func cgiRequest(req *http.Request, scriptName, pathInfo string, body []byte) wasm.Request {
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		host, port = req.Host, "80"
		if req.TLS != nil {
			port = "443"
		}
	}
	return wasm.Request{
		Method:     req.Method,
		Host:       req.Host,
		ScriptName: scriptName,
		PathInfo:   pathInfo,
		RawQuery:   req.URL.RawQuery,
		Header:     req.Header,
		Body:       body,
		RemoteAddr: req.RemoteAddr,
		Proto:      req.Proto,
		ServerName: host,
		ServerPort: port,
	}
}

func writeError(w http.ResponseWriter, status int, cause, msg string) {
	w.Header().Set(ErrorHeader, cause)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// access writes the request's access log line: function, version, status,
// duration and fuel used.
func (r *Registry) access(d *deployment, req *http.Request, status int, start time.Time, fuel int64, cause string) {
	dur := r.opts.Now().Sub(start)
	r.metrics.observe(&d.series, d.fn.Name, status, cause, dur, fuel)
	attrs := map[string]string{
		"method": req.Method, "path": req.URL.Path, "status": strconv.Itoa(status),
		"duration_us": strconv.FormatInt(dur.Microseconds(), 10), "fuel": strconv.FormatInt(fuel, 10),
	}
	if cause != "" {
		attrs["error"] = cause
	}
	r.logLine(d, "access", "info", fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, status), attrs)
	if r.opts.Log != nil {
		r.opts.Log.Info("function request", "function", d.fn.Name, "version", d.fn.Version, "method", req.Method,
			"path", req.URL.Path, "status", status, "duration", dur, "fuel", fuel, "error", cause)
	}
}
