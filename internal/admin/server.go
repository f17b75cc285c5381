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
	"os"
	"path/filepath"
	"time"

	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/store"
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
	mux.HandleFunc("GET /v1/lists/{list}", s.handleList)
	mux.HandleFunc("POST /v1/lists/{list}", s.handleAdd)
	mux.HandleFunc("POST /v1/lists/{list}/remove", s.handleRemove)
	mux.HandleFunc("GET /v1/shield", s.handleStatus)
	mux.HandleFunc("PUT /v1/shield/mode", s.handleMode)
	mux.HandleFunc("PUT /v1/shield/rate", s.handleRate)
	mux.HandleFunc("POST /v1/shield/detach", s.handleDetach)
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

// Handler exposes the routes, for tests that serve them elsewhere.
func (s *Server) Handler() http.Handler { return s.http.Handler }

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

func peerActor(c net.Conn) node.Actor {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return node.Actor{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return node.Actor{}
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return node.Actor{}
	}
	return node.Actor{UID: int(cred.Uid), PID: int(cred.Pid)}
}

func actorOf(r *http.Request) node.Actor {
	a, _ := r.Context().Value(actorKey{}).(node.Actor)
	return a
}

// decode reads a strict JSON body: bounded size, no unknown fields, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body exceeds %d bytes", errTooLarge, MaxBodyBytes)
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
	case errors.Is(err, node.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, node.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, node.ErrRefused):
		status = http.StatusConflict
	}
	if status == http.StatusInternalServerError {
		s.log.Error("admin request failed", "err", err)
	}
	s.reply(w, status, ErrorResponse{Error: err.Error()})
}

func listOf(r *http.Request) (store.List, error) {
	switch l := store.List(r.PathValue("list")); l {
	case store.Blocklist, store.Allowlist:
		return l, nil
	default:
		return "", fmt.Errorf("%w: unknown list %q (want block or allow)", node.ErrNotFound, r.PathValue("list"))
	}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	l, err := listOf(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	entries, auto, err := s.node.List(l)
	if err != nil {
		s.fail(w, err)
		return
	}
	if entries == nil {
		entries = []node.ListedEntry{}
	}
	s.reply(w, http.StatusOK, ListResponse{Entries: entries, AutoBlocks: auto})
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	l, err := listOf(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	var req AddRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
	}
	targets, err := node.ParseTargets(req.Targets)
	if err != nil {
		s.fail(w, err)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			s.fail(w, fmt.Errorf("%w: ttl %q is not a duration (e.g. 10m, 24h)", node.ErrInvalid, req.TTL))
			return
		}
	}
	added, err := s.node.Add(node.AddRequest{List: l, Targets: targets, TTL: ttl, Reason: req.Reason, Force: req.Force, Actor: actorOf(r)})
	if err != nil {
		s.fail(w, err)
		return
	}
	resp := AddResponse{Added: make([]node.ListedEntry, len(added))}
	for i, e := range added {
		resp.Added[i] = node.ListedEntry{Entry: e}
	}
	s.reply(w, http.StatusOK, resp)
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	l, err := listOf(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	var req RemoveRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
	}
	targets, err := node.ParseTargets(req.Targets)
	if err != nil {
		s.fail(w, err)
		return
	}
	n, err := s.node.Remove(l, targets, actorOf(r))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, RemoveResponse{Removed: n})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.node.Status()
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, st)
}

func (s *Server) handleMode(w http.ResponseWriter, r *http.Request) {
	var req ModeRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
	}
	st, err := s.node.SetSettings(func(st *shield.Settings) { st.Mode = shield.Mode(req.Mode) }, actorOf(r))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, st)
}

func (s *Server) handleRate(w http.ResponseWriter, r *http.Request) {
	var req RateRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
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
		s.fail(w, fmt.Errorf("%w: unknown class %q (want syn, udp or icmp)", node.ErrInvalid, req.Class))
		return
	}
	st, err := s.node.SetSettings(change, actorOf(r))
	if err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, st)
}

func (s *Server) handleDetach(w http.ResponseWriter, r *http.Request) {
	var req DetachRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.Interface == "" {
		s.fail(w, fmt.Errorf("%w: interface is required", node.ErrInvalid))
		return
	}
	if err := s.node.Detach(req.Interface, actorOf(r)); err != nil {
		s.fail(w, err)
		return
	}
	s.reply(w, http.StatusOK, map[string]string{"detached": req.Interface})
}
