package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
	"golang.org/x/sys/unix"
)

// Server serves the admin API for a node.
type Server struct {
	node *node.Node
	log  *slog.Logger
	http *http.Server
}

type actorKey struct{}

// NewServer builds the API's handler around a node.
func NewServer(n *node.Node, log *slog.Logger) *Server {
	s := &Server{node: n, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc(http.MethodGet+" "+pathList, s.handle(s.handleList))
	mux.HandleFunc(http.MethodPost+" "+pathList, s.handle(s.handleAdd))
	mux.HandleFunc(http.MethodPost+" "+pathListRemove, s.handle(s.handleRemove))
	mux.HandleFunc(http.MethodGet+" "+pathShield, s.handle(s.handleStatus))
	mux.HandleFunc(http.MethodPut+" "+pathShieldMode, s.handle(s.handleMode))
	mux.HandleFunc(http.MethodPut+" "+pathShieldRate, s.handle(s.handleRate))
	mux.HandleFunc(http.MethodPost+" "+pathShieldDetach, s.handle(s.handleDetach))
	mux.HandleFunc(http.MethodGet+" "+pathFunctions, s.handle(s.handleFunctions))
	mux.HandleFunc(http.MethodGet+" "+pathFunction, s.handle(s.handleFunction))
	mux.HandleFunc(http.MethodPut+" "+pathFunction, s.handle(s.handleDeploy))
	mux.HandleFunc(http.MethodDelete+" "+pathFunction, s.handle(s.handleRemoveFunction))
	mux.HandleFunc(http.MethodGet+" "+pathFunctionLogs, s.handleLogs)
	mux.HandleFunc(http.MethodGet+" "+pathFleet, s.handle(s.handleFleet))
	mux.Handle(http.MethodGet+" "+pathMetrics, n.MetricsHandler())
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, actorKey{}, peerActor(c))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen creates the unix socket (mode 0600, its directory 0700), replacing
// a stale one left by a killed daemon.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use by another node", path)
	}
	os.Remove(path)
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Serve answers requests on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func actorOf(r *http.Request) node.Actor {
	a, _ := r.Context().Value(actorKey{}).(node.Actor)
	return a
}

// decode reads a strict JSON body: bounded size, no unknown fields, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeLimit(w, r, v, MaxBodyBytes)
}

func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body exceeds %d bytes", errTooLarge, limit)
		}
		return fmt.Errorf("%w: reading body: %v", node.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: malformed JSON body: %v", node.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON body: trailing data", node.ErrInvalid)
	}
	return nil
}

var errTooLarge = errors.New("too large")

func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, node.ErrInvalid), errors.Is(err, functions.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, node.ErrNotFound), errors.Is(err, functions.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, node.ErrRefused), errors.Is(err, functions.ErrConflict):
		status = http.StatusConflict
	}
	if status == http.StatusInternalServerError {
		s.log.Error("admin request failed", "err", err)
	}
	s.reply(w, status, ErrorResponse{Error: err.Error()})
}

func listOf(r *http.Request) (lists.List, error) {
	if l := lists.List(r.PathValue("list")); l.Valid() {
		return l, nil
	}
	return "", fmt.Errorf("%w: unknown list %q (want block or allow)", lists.ErrNotFound, r.PathValue("list"))
}

// handle adapts an operation that returns its answer or an error to an
// http.HandlerFunc, so every route replies and fails the same way.
func (s *Server) handle(op func(http.ResponseWriter, *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := op(w, r)
		if err != nil {
			s.fail(w, err)
			return
		}
		s.reply(w, http.StatusOK, v)
	}
}

// listTargets reads a list request: the list from the path, the JSON body
// into req, and the targets it names, parsed.
func listTargets(w http.ResponseWriter, r *http.Request, req any, targets *[]string) (lists.List, []netip.Prefix, error) {
	l, err := listOf(r)
	if err != nil {
		return "", nil, err
	}
	if err := decode(w, r, req); err != nil {
		return "", nil, err
	}
	ps, err := lists.ParseTargets(*targets)
	return l, ps, err
}

func (s *Server) handleList(_ http.ResponseWriter, r *http.Request) (any, error) {
	l, err := listOf(r)
	if err != nil {
		return nil, err
	}
	entries, auto, err := s.node.List(l)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []node.ListedEntry{}
	}
	return ListResponse{Entries: entries, AutoBlocks: auto}, nil
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) (any, error) {
	var req AddRequest
	l, targets, err := listTargets(w, r, &req, &req.Targets)
	if err != nil {
		return nil, err
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			return nil, fmt.Errorf("%w: ttl %q is not a duration (e.g. 10m, 24h)", node.ErrInvalid, req.TTL)
		}
	}
	added, err := s.node.Add(node.AddRequest{List: l, Targets: targets, TTL: ttl, Reason: req.Reason, Force: req.Force, Actor: actorOf(r)})
	if err != nil {
		return nil, err
	}
	resp := AddResponse{Added: make([]node.ListedEntry, len(added))}
	for i, e := range added {
		resp.Added[i] = node.ListedEntry{Entry: e}
	}
	return resp, nil
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) (any, error) {
	var req RemoveRequest
	l, targets, err := listTargets(w, r, &req, &req.Targets)
	if err != nil {
		return nil, err
	}
	n, err := s.node.Remove(l, targets, actorOf(r))
	if err != nil {
		return nil, err
	}
	return RemoveResponse{Removed: n}, nil
}

func (s *Server) handleStatus(_ http.ResponseWriter, _ *http.Request) (any, error) {
	return s.node.Status()
}

func (s *Server) handleFleet(_ http.ResponseWriter, _ *http.Request) (any, error) {
	return s.node.FleetStatus()
}

func (s *Server) handleMode(w http.ResponseWriter, r *http.Request) (any, error) {
	var req ModeRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	return s.node.SetSettings(func(st *shield.Settings) { st.Mode = shield.Mode(req.Mode) }, actorOf(r))
}

func (s *Server) handleRate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req RateRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	b := shield.Bucket{PPS: req.PPS, Burst: req.Burst}
	var change func(*shield.Settings)
	switch req.Class {
	case "syn":
		change = func(st *shield.Settings) { st.SYN = b }
	case "udp":
		change = func(st *shield.Settings) { st.UDP = b }
	case "icmp":
		change = func(st *shield.Settings) { st.ICMP = b }
	default:
		return nil, fmt.Errorf("%w: unknown class %q (want syn, udp or icmp)", node.ErrInvalid, req.Class)
	}
	return s.node.SetSettings(change, actorOf(r))
}

func (s *Server) handleDetach(w http.ResponseWriter, r *http.Request) (any, error) {
	var req DetachRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if req.Interface == "" {
		return nil, fmt.Errorf("%w: interface is required", node.ErrInvalid)
	}
	if err := s.node.Detach(req.Interface, actorOf(r)); err != nil {
		return nil, err
	}
	return map[string]string{"detached": req.Interface}, nil
}

func (s *Server) handleFunctions(_ http.ResponseWriter, _ *http.Request) (any, error) {
	return FunctionsResponse{Functions: s.node.Functions().List()}, nil
}

func (s *Server) handleFunction(_ http.ResponseWriter, r *http.Request) (any, error) {
	return s.node.Functions().Get(r.PathValue("name"))
}

func (s *Server) handleDeploy(w http.ResponseWriter, r *http.Request) (any, error) {
	var req DeployRequest
	// The module travels as base64: a third larger than its size limit.
	limit := max(MaxBodyBytes, int64(s.node.Config().Functions.MaxModuleSize)/3*4+1<<20)
	if err := decodeLimit(w, r, &req, limit); err != nil {
		return nil, err
	}
	if len(req.Module) == 0 {
		return nil, fmt.Errorf("%w: module is required", node.ErrInvalid)
	}
	return s.node.Functions().Deploy(r.Context(), r.PathValue("name"), req.Module, req.Spec, actorOf(r).String())
}

func (s *Server) handleRemoveFunction(_ http.ResponseWriter, r *http.Request) (any, error) {
	return s.node.Functions().Remove(r.PathValue("name"), actorOf(r).String())
}

// handleLogs streams a function's log as JSON lines: the last n (query n,
// default 100), then, with follow=1, every new line until the client goes.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			s.fail(w, fmt.Errorf("%w: n must be a non-negative integer, got %q", node.ErrInvalid, v))
			return
		}
	}
	follow := r.URL.Query().Get("follow") == "1"
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	err := s.node.Functions().Logs(r.Context(), r.PathValue("name"), n, follow, func(l functions.LogLine) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && !started {
		s.fail(w, err)
		return
	}
	if !started {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}
