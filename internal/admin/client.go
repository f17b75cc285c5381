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
	"time"
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

// Do sends a request with an optional JSON body and decodes the JSON answer
// into out (when non-nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
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

// Stream sends a GET and calls fn with each line of the answer as it
// arrives, until the answer ends, ctx ends or fn fails.
func (c *Client) Stream(ctx context.Context, path string, fn func(line []byte) error) error {
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

// Get fetches path and returns the answer's body as it is (for /metrics).
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
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
