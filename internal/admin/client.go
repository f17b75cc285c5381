package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
)

// DefaultSocket is where the node listens unless configured otherwise.
const DefaultSocket = "/run/aegis/admin.sock"

// Client calls a node's admin API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
	// stream has no overall timeout: a followed log may run for hours.
	stream *http.Client
}

// NewClient returns a client for the node listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, stream: &http.Client{Transport: tr}}
}

// APIError is a refusal from the node, with the HTTP status it came with.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// do sends a request with an optional JSON body and decodes the JSON answer
// into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, c.http, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding answer: %w", err)
	}
	return nil
}

// streamLines sends a GET and calls fn with each line of the answer as it
// arrives, until the answer ends, ctx ends or fn fails.
func (c *Client) streamLines(ctx context.Context, path string, fn func(line []byte) error) error {
	resp, err := c.send(ctx, c.stream, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	return nil
}

// send performs a request and turns a non-2xx answer into an *APIError.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://aegis"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return nil, fmt.Errorf("cannot reach the node at %s (is `aegis node` running? set --socket or AEGIS_SOCKET): %w", c.socket, ne.Err)
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e ErrorResponse
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
		}
		return nil, &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("node answered %s", resp.Status)}
	}
	return resp, nil
}

// get fetches path and returns the answer's body as it is (for /metrics).
func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.send(ctx, c.http, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	return b, nil
}

// expand fills in the one wildcard of a route pattern, escaped.
func expand(pattern, value string) string {
	open, end := strings.IndexByte(pattern, '{'), strings.IndexByte(pattern, '}')
	return pattern[:open] + url.PathEscape(value) + pattern[end+1:]
}

// List returns the entries of a list ("blocklist" or "allowlist"), and for
// the blocklist the shield's automatic blocks.
func (c *Client) List(ctx context.Context, list string) (ListResponse, error) {
	var resp ListResponse
	err := c.do(ctx, http.MethodGet, expand(pathList, list), nil, &resp)
	return resp, err
}

// Add adds targets to a list, all or nothing, and returns the new entries.
func (c *Client) Add(ctx context.Context, list string, req AddRequest) (AddResponse, error) {
	var resp AddResponse
	err := c.do(ctx, http.MethodPost, expand(pathList, list), req, &resp)
	return resp, err
}

// Remove removes targets from a list and returns how many it removed.
func (c *Client) Remove(ctx context.Context, list string, targets []string) (int, error) {
	var resp RemoveResponse
	err := c.do(ctx, http.MethodPost, expand(pathListRemove, list), RemoveRequest{Targets: targets}, &resp)
	return resp.Removed, err
}

// Status returns the shield's status: settings, interfaces, maps, counters.
func (c *Client) Status(ctx context.Context) (node.Status, error) {
	var st node.Status
	err := c.do(ctx, http.MethodGet, pathShield, nil, &st)
	return st, err
}

// FleetStatus is the node's view of the fleet it follows (Enabled false
// when it follows none).
func (c *Client) FleetStatus(ctx context.Context) (node.FleetStatus, error) {
	var st node.FleetStatus
	err := c.do(ctx, http.MethodGet, pathFleet, nil, &st)
	return st, err
}

// SetMode switches the shield to "enforce" or "monitor" and returns the
// settings now in force.
func (c *Client) SetMode(ctx context.Context, mode string) (shield.Settings, error) {
	var st shield.Settings
	err := c.do(ctx, http.MethodPut, pathShieldMode, ModeRequest{Mode: mode}, &st)
	return st, err
}

// SetRate changes one class's per-source rate limit and returns the
// settings now in force.
func (c *Client) SetRate(ctx context.Context, req RateRequest) (shield.Settings, error) {
	var st shield.Settings
	err := c.do(ctx, http.MethodPut, pathShieldRate, req, &st)
	return st, err
}

// Detach removes the shield from an interface.
func (c *Client) Detach(ctx context.Context, iface string) error {
	return c.do(ctx, http.MethodPost, pathShieldDetach, DetachRequest{Interface: iface}, nil)
}

// Functions lists the deployed functions.
func (c *Client) Functions(ctx context.Context) ([]functions.Info, error) {
	var resp FunctionsResponse
	err := c.do(ctx, http.MethodGet, pathFunctions, nil, &resp)
	return resp.Functions, err
}

// Deploy deploys a new version of a function and describes it.
func (c *Client) Deploy(ctx context.Context, name string, req DeployRequest) (functions.Info, error) {
	var info functions.Info
	err := c.do(ctx, http.MethodPut, expand(pathFunction, name), req, &info)
	return info, err
}

// RemoveFunction removes a function, its module and its key-value data,
// and describes what it removed.
func (c *Client) RemoveFunction(ctx context.Context, name string) (functions.Info, error) {
	var info functions.Info
	err := c.do(ctx, http.MethodDelete, expand(pathFunction, name), nil, &info)
	return info, err
}

// FunctionLogs calls fn with each of a function's last n log lines (JSON)
// and, when follow is set, with every new one until ctx ends or fn fails.
func (c *Client) FunctionLogs(ctx context.Context, name string, n int, follow bool, fn func(line []byte) error) error {
	q := url.Values{"n": {strconv.Itoa(n)}}
	if follow {
		q.Set("follow", "1")
	}
	return c.streamLines(ctx, expand(pathFunctionLogs, name)+"?"+q.Encode(), fn)
}

// Metrics returns the node's Prometheus metrics in the text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.get(ctx, pathMetrics)
}
