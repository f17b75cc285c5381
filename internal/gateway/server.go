package gateway

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/rawsock"
)

// Limits bound what the gateway's clients can hold: each connection costs
// the node a file descriptor, a goroutine and buffers.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is the deadline for the whole request, headers and
	// body, from its first byte.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing the answer once the request is read
	// and, for a handler that calls [BodyRead], once its run is over.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection waiting for a request.
	IdleTimeout time.Duration
	// MaxConns caps the open connections; it must be positive.
	MaxConns int
	// MaxConnsPerIP caps one client's open connections (an IPv6 client
	// is its /64); 0 lifts the cap.
	MaxConnsPerIP int
	// MaxHeaderBytes bounds a request's headers; 0 is net/http's 1 MiB.
	MaxHeaderBytes int
}

func (l Limits) validate() error {
	if l.ReadHeaderTimeout <= 0 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0 {
		return fmt.Errorf("gateway limits: every timeout must be positive: %+v", l)
	}
	if l.MaxConns <= 0 || l.MaxConnsPerIP < 0 || l.MaxHeaderBytes < 0 {
		return fmt.Errorf("gateway limits: max conns must be positive and the per-client cap not negative: %+v", l)
	}
	return nil
}

// server are the Limits an http.Server is built with; a change of them
// needs a new one.
func (l Limits) server() [5]int64 {
	return [5]int64{int64(l.ReadHeaderTimeout), int64(l.ReadTimeout), int64(l.WriteTimeout), int64(l.IdleTimeout), int64(l.MaxHeaderBytes)}
}

// Reasons a connection is refused, the label of the rejections metric.
const (
	RejectMaxConns      = "max_conns"
	RejectMaxConnsPerIP = "max_conns_per_ip"
)

// Server serves a handler on a TCP listener within Limits. One accept loop
// admits connections under the caps (over a cap, a connection is closed at
// once) and hands them to an http.Server built with the timeouts; new
// timeouts start a new http.Server while the previous one drains.
type Server struct {
	ln       net.Listener
	handler  http.Handler
	log      *slog.Logger
	errorLog *log.Logger

	limits atomic.Pointer[Limits]
	conns  chan net.Conn // admitted connections, to the current http.Server
	done   chan struct{} // closed by Shutdown and Close
	stop   sync.Once

	mu      sync.Mutex
	open    int
	perIP   map[netip.Addr]int
	current *generation
	gens    map[*generation]bool // every http.Server not yet drained

	rejectedTotal, rejectedPerIP, acceptErrors atomic.Uint64

	// sleep waits out an accept error's backoff; tests record it.
	sleep func(time.Duration)
}

// generation is one http.Server and the view of the accept loop it serves.
type generation struct {
	srv    *http.Server
	view   *view
	limits Limits
}

// NewServer prepares to serve h on ln; Serve starts it. The logger gets
// accept errors and the http.Server's own complaints.
func NewServer(ln net.Listener, h http.Handler, lim Limits, logger *slog.Logger) (*Server, error) {
	if err := lim.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ln: ln, handler: h, log: logger,
		errorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		conns:    make(chan net.Conn), done: make(chan struct{}),
		perIP: map[netip.Addr]int{}, gens: map[*generation]bool{},
	}
	s.sleep = s.wait
	s.limits.Store(&lim)
	return s, nil
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Limits are the limits in force.
func (s *Server) Limits() Limits { return *s.limits.Load() }

// SetLimits changes the limits. The caps apply at once to new connections
// (open ones are not closed); new timeouts apply to connections accepted
// from now on, and open connections keep theirs.
func (s *Server) SetLimits(lim Limits) error {
	if err := lim.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits.Store(&lim)
	if s.current == nil || s.current.limits.server() == lim.server() {
		return nil
	}
	select {
	case <-s.done:
		return nil
	default:
	}
	old := s.current
	s.startLocked(lim)
	// The old server stops taking connections and closes its idle ones;
	// the requests it is serving finish within its timeouts.
	old.view.Close()
	go s.drain(old, context.Background())
	return nil
}

// Serve accepts connections until Shutdown or Close, and returns nil then.
func (s *Server) Serve() error {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return nil
	default:
	}
	s.startLocked(*s.limits.Load())
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors (EMFILE, ENFILE) or out of buffers: the
			// pending connection stays in the backlog. Back off, doubling
			// up to a second, rather than spin on the same error.
			s.acceptErrors.Add(1)
			if delay == 0 {
				s.log.Error("gateway: accepting connections", "err", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.sleep(delay)
			continue
		}
		delay = 0
		tc, ok := s.admit(c)
		if !ok {
			continue
		}
		select {
		case s.conns <- tc:
		case <-s.done:
			tc.Close()
			return nil
		}
	}
}

// wait sleeps for d or until the server stops.
func (s *Server) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// startLocked serves the accept loop's connections with a new http.Server
// built with lim's timeouts. The caller holds s.mu.
func (s *Server) startLocked(lim Limits) {
	g := &generation{limits: lim, view: &view{s: s, closed: make(chan struct{})}}
	g.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		// A deadline for headers and body together; a handler that has
		// read the body lifts it (BodyRead), or the connection's
		// background read would cancel the request at the deadline.
		ReadTimeout: lim.ReadTimeout,
		// Answers written without reading the body (404, 408) may come
		// at the end of the read deadline; BodyRead moves this one.
		WriteTimeout:   lim.ReadTimeout + lim.WriteTimeout,
		IdleTimeout:    lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes,
		ErrorLog:       s.errorLog,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), limitsKey{}, lim)
		},
	}
	s.current = g
	s.gens[g] = true
	go func() {
		g.srv.Serve(g.view)
	}()
}

// drain shuts an http.Server down gracefully and forgets it.
func (s *Server) drain(g *generation, ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.srv.Close()
	}
	s.mu.Lock()
	delete(s.gens, g)
	s.mu.Unlock()
	return err
}

// Shutdown stops accepting, closes idle connections and waits for the
// requests in flight until ctx ends; then it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop.Do(func() { close(s.done) })
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	s.mu.Lock()
	gens := make([]*generation, 0, len(s.gens))
	for g := range s.gens {
		gens = append(gens, g)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(gens))
	for i, g := range gens {
		g.view.Close()
		wg.Go(func() { errs[i] = s.drain(g, ctx) })
	}
	wg.Wait()
	return errors.Join(append(errs, err)...)
}

// Close stops the server and closes every connection at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

// admit counts c against the caps, or closes it and counts the rejection.
// Closing at once, rather than answering 503, costs no goroutine and no
// write to a client that may not read: the descriptor is free again before
// the next accept.
func (s *Server) admit(c net.Conn) (net.Conn, bool) {
	lim := s.limits.Load()
	key := clientKey(c.RemoteAddr())
	s.mu.Lock()
	var rejected *atomic.Uint64
	switch {
	case s.open >= lim.MaxConns:
		rejected = &s.rejectedTotal
	case lim.MaxConnsPerIP > 0 && s.perIP[key] >= lim.MaxConnsPerIP:
		rejected = &s.rejectedPerIP
	default:
		s.open++
		s.perIP[key]++
	}
	s.mu.Unlock()
	if rejected != nil {
		rejected.Add(1)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset: no TIME_WAIT left behind on the node
		}
		c.Close()
		return nil, false
	}
	ac := &conn{Conn: c, s: s, key: key}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			ac.rc = rc
		}
	}
	return ac, true
}

func (s *Server) release(key netip.Addr) {
	s.mu.Lock()
	s.open--
	if s.perIP[key]--; s.perIP[key] <= 0 {
		delete(s.perIP, key)
	}
	s.mu.Unlock()
}

// Stats are the server's connection counts.
type Stats struct {
	// Open is the connections open now.
	Open int
	// Rejected counts connections closed at accept, by reason.
	Rejected map[string]uint64
	// AcceptErrors counts failed accepts (such as EMFILE).
	AcceptErrors uint64
}

// Stats reports the connection counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	return Stats{
		Open: open,
		Rejected: map[string]uint64{
			RejectMaxConns:      s.rejectedTotal.Load(),
			RejectMaxConnsPerIP: s.rejectedPerIP.Load(),
		},
		AcceptErrors: s.acceptErrors.Load(),
	}
}

// clientKey is what the per-client cap counts by: the IPv4 address, or the
// IPv6 /64 (one subscriber's allocation, as the shield groups sources).
func clientKey(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// conn is an admitted connection; closing it frees its place under the caps.
type conn struct {
	net.Conn
	// rc, when the connection has one, is read and written with raw
	// calls inside the poller (package rawsock): net/http's reads and
	// writes then never enter the runtime's syscall state, which under
	// load woke sysmon and a thread about once a request.
	rc   syscall.RawConn
	s    *Server
	key  netip.Addr
	once sync.Once
}

func (c *conn) Read(p []byte) (int, error) {
	if c.rc == nil {
		return c.Conn.Read(p)
	}
	n, err := rawsock.Read(c.rc, p)
	return n, c.opError("read", err)
}

func (c *conn) Write(p []byte) (int, error) {
	if c.rc == nil {
		return c.Conn.Write(p)
	}
	n, err := rawsock.Write(c.rc, p)
	return n, c.opError("write", err)
}

// opError wraps an errno as net.Conn's Read and Write do; io.EOF and the
// poller's errors (closed, deadline exceeded), already *net.OpError, pass
// as they are.
func (c *conn) opError(op string, err error) error {
	errno, ok := err.(syscall.Errno)
	if !ok {
		return err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.s.release(c.key) })
	return err
}

// CloseWrite lets net/http half-close before it closes, as it does with a
// bare TCP connection.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// view is one http.Server's listener: it takes the accept loop's admitted
// connections until closed. Closing it does not close the real listener.
type view struct {
	s      *Server
	closed chan struct{}
	once   sync.Once
}

func (v *view) Accept() (net.Conn, error) {
	select {
	case <-v.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-v.s.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	}
}

func (v *view) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *view) Addr() net.Addr { return v.s.ln.Addr() }

type limitsKey struct{}

// BodyRead tells the gateway that the handler has read the request body
// and will answer within run (the function's own timeout). It lifts the
// read deadline, so that the connection's background read does not cancel
// the request when the deadline passes during the run, and moves the write
// deadline to run plus the write timeout. It does nothing for a request
// that did not come through a Server.
func BodyRead(w http.ResponseWriter, r *http.Request, run time.Duration) {
	lim, ok := r.Context().Value(limitsKey{}).(Limits)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Now().Add(run + lim.WriteTimeout))
}
