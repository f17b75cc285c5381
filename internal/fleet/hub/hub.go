package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names on the bus. Bucket names allow [a-zA-Z0-9_-].
const (
	// Bucket is the KV bucket of signed change records, one per storage key.
	Bucket = "aegis_fleet"
	// Stream is the JetStream stream behind Bucket.
	Stream = "KV_" + Bucket
	// ModuleBucket is the object store of function modules, named by
	// their hex SHA-256.
	ModuleBucket = "aegis_modules"
	// MetaCompacted is the stream metadata key holding the highest
	// revision of a tombstone the hub has removed (decimal). An edge whose
	// last applied revision is below it missed a deletion and reconciles
	// fully.
	MetaCompacted = "aegis_compacted"
	// DefaultListen is the embedded server's client address.
	DefaultListen = "127.0.0.1:4222"
	// SubjectPrefix is the subject prefix of Bucket's keys.
	SubjectPrefix = "$KV." + Bucket + "."
)

// Options configure a hub's NATS side.
type Options struct {
	// NATSURL, if set, is an existing JetStream cluster (comma-separated
	// URLs): no embedded server is started.
	NATSURL string
	// StoreDir is the embedded server's JetStream directory (under the
	// hub's state_dir).
	StoreDir string
	// Listen is the client address, host:port; DefaultListen when empty,
	// port -1 for a random one (tests).
	Listen string
	// ServerName names this hub in a cluster; NATS makes one up if empty.
	ServerName string
	// Cluster joins hubs into one JetStream cluster (three for R3).
	Cluster Cluster
	// Replicas of the buckets (1 or 3); 1 when 0.
	Replicas int
	// TLS, if set, is required of every client of the embedded server
	// (hub.tls.*). With ClientAuth tls.RequireAndVerifyClientCert and
	// ClientCAs, clients must present a certificate signed by those CAs
	// (mutual TLS). The hub's own connection is in-process and needs none.
	TLS *tls.Config
	// Users, if any, must authenticate to the embedded server; edges get
	// read-only permissions (RoleEdge). Without users any client that
	// reaches the listener (and passes TLS) may write.
	Users []User
	// ClusterTLS, if set, secures the routes between hubs.
	ClusterTLS *tls.Config
	// Logger receives the embedded server's notices, warnings and errors;
	// none when nil.
	Logger *slog.Logger
	// ConnOptions are added to the hub's own client connection
	// (credentials, TLS).
	ConnOptions []nats.Option
	// ReportWindow is the controller's window (hub.auto_block.window):
	// the reports stream keeps ReportAge(ReportWindow).
	ReportWindow time.Duration
}

// Cluster is the embedded server's cluster settings.
type Cluster struct {
	Name   string
	Listen string   // host:port for routes
	Routes []string // nats-route://host:port of the other hubs
	// Password authenticates the routes between hubs (user RouteUser):
	// a server that joins a route is trusted with every subject, past
	// the users' permissions. Either it or a ClusterTLS that verifies
	// the peers' certificates is required with Listen.
	Password string
}

// RouteUser is the user hubs present to each other's route listeners.
const RouteUser = "aegis-route"

// Hub is a running hub: its embedded server (nil with an external
// cluster), its client connection and its buckets.
type Hub struct {
	Server  *server.Server
	Conn    *nats.Conn
	JS      jetstream.JetStream
	KV      jetstream.KeyValue
	Modules jetstream.ObjectStore
}

// Open starts the embedded server (unless opts.NATSURL names an external
// one), connects to it and creates the buckets and the reports stream if
// they do not exist.
func Open(ctx context.Context, opts Options) (*Hub, error) {
	h := &Hub{}
	url := opts.NATSURL
	copts := []nats.Option{nats.Name("aegis-hub"), nats.MaxReconnects(-1)}
	if url == "" {
		srv, self, err := startServer(opts)
		if err != nil {
			return nil, err
		}
		h.Server = srv
		// In process: no socket, no TLS (a tls:// URL would ask for it),
		// and it lives as long as the server.
		url = nats.DefaultURL
		copts = append(copts, nats.InProcessServer(srv))
		if self != nil {
			copts = append(copts, nats.UserInfo(self.Username, self.Password))
		}
	}
	nc, err := nats.Connect(url, append(copts, opts.ConnOptions...)...)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	h.Conn = nc
	h.JS, err = jetstream.New(nc)
	if err != nil {
		h.Close()
		return nil, err
	}
	// In a cluster the buckets can be created only once the hubs have
	// elected a JetStream leader: keep trying until ctx says stop.
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h.KV, h.Modules, err = EnsureBuckets(actx, h.JS, opts.Replicas)
		if err == nil {
			err = EnsureReports(actx, h.JS, opts.Replicas, opts.ReportWindow)
		}
		cancel()
		if err == nil {
			return h, nil
		}
		select {
		case <-ctx.Done():
			h.Close()
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close closes the connection and shuts the embedded server down.
func (h *Hub) Close() {
	if h.Conn != nil {
		h.Conn.Close()
	}
	if h.Server != nil {
		h.Server.Shutdown()
		h.Server.WaitForShutdown()
	}
}

// StartServer starts an embedded NATS server with JetStream and waits
// until it accepts clients. The caller shuts it down.
func StartServer(opts Options) (*server.Server, error) {
	srv, _, err := startServer(opts)
	return srv, err
}

// startServer also returns the hub's own user when opts has users.
func startServer(opts Options) (*server.Server, *server.User, error) {
	if opts.StoreDir == "" {
		return nil, nil, errors.New("hub: no JetStream store directory")
	}
	listen := opts.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return nil, nil, fmt.Errorf("hub.listen %q: %w", listen, err)
	}
	so := &server.Options{
		ServerName: opts.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Clean(opts.StoreDir),
		NoSigs:     true,
		// Change records are small; a bound keeps a client from parking
		// megabytes on the hub in one message. Modules go in chunks.
		MaxPayload: 1 << 20,
	}
	var self *server.User
	if len(opts.Users) > 0 {
		for _, u := range opts.Users {
			if u.Name == HubUser {
				return nil, nil, fmt.Errorf("hub.users: %q is the hub's own user", HubUser)
			}
		}
		so.Users, self = serverUsers(opts.Users)
	}
	if opts.TLS != nil {
		so.TLS = true
		so.TLSConfig = opts.TLS
		so.TLSVerify = opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		so.TLSTimeout = 5
	}
	if opts.Cluster.Name != "" || opts.Cluster.Listen != "" {
		ch, cp, err := splitHostPort(opts.Cluster.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("hub.cluster.listen %q: %w", opts.Cluster.Listen, err)
		}
		verified := opts.ClusterTLS != nil && opts.ClusterTLS.ClientAuth == tls.RequireAndVerifyClientCert
		if opts.Cluster.Password == "" && !verified {
			return nil, nil, errors.New("hub.cluster: routes need authentication, hub.cluster.password or hub.cluster_tls with a ca: " +
				"a server that joins a route writes past every user's permissions")
		}
		so.Cluster = server.ClusterOpts{Name: opts.Cluster.Name, Host: ch, Port: cp}
		if opts.ClusterTLS != nil {
			so.Cluster.TLSConfig = opts.ClusterTLS
			so.Cluster.TLSTimeout = 5
		}
		if opts.Cluster.Password != "" {
			so.Cluster.Username, so.Cluster.Password = RouteUser, opts.Cluster.Password
		}
		for _, r := range opts.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, nil, fmt.Errorf("hub.cluster.routes %q: %w", r, err)
			}
			if opts.Cluster.Password != "" && u.User == nil {
				u.User = url.UserPassword(RouteUser, opts.Cluster.Password)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the embedded NATS server: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nl := &natsLogger{log: log.With("component", "nats")}
	srv.SetLoggerV2(nl, false, false, false)
	go srv.Start()
	for deadline := time.Now().Add(30 * time.Second); !srv.ReadyForConnections(100 * time.Millisecond); {
		e, fatal := nl.lastError()
		if fatal || time.Now().After(deadline) {
			srv.Shutdown()
			if e != "" {
				return nil, nil, fmt.Errorf("the embedded NATS server did not start: %s", e)
			}
			return nil, nil, fmt.Errorf("the embedded NATS server did not start listening on %s", listen)
		}
	}
	return srv, self, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// EnsureBuckets creates the change bucket, the edges' report bucket and
// the module store if they do not exist, and returns the first and the
// last. The change bucket keeps one revision per
// key (history 1): a key's latest signed record is all an edge needs, and
// a deletion is itself a signed record, so nothing relies on history.
func EnsureBuckets(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, jetstream.ObjectStore, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       Bucket,
			Description:  "aegis fleet: signed change records",
			History:      1,
			MaxValueSize: 64 << 10,
			Storage:      jetstream.FileStorage,
			Replicas:     replicas,
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("opening KV bucket %s: %w", Bucket, err)
	}
	if _, err := js.KeyValue(ctx, EdgesBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       EdgesBucket,
			Description:  "aegis fleet: edges' reports",
			History:      1,
			MaxValueSize: 16 << 10,
			Storage:      jetstream.FileStorage,
			Replicas:     replicas,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("creating KV bucket %s: %w", EdgesBucket, err)
		}
	} else if err != nil {
		return nil, nil, fmt.Errorf("opening KV bucket %s: %w", EdgesBucket, err)
	}
	if err := harden(ctx, js, "KV_"+EdgesBucket, func(c *jetstream.StreamConfig) { c.AllowRollup = false }); err != nil {
		return nil, nil, err
	}
	obj, err := js.ObjectStore(ctx, ModuleBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obj, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      ModuleBucket,
			Description: "aegis fleet: function modules by SHA-256",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("opening object store %s: %w", ModuleBucket, err)
	}
	// Edges create consumers on these two; one they leave behind (a
	// durable one, which their permissions cannot tell from the
	// ephemeral ones they use) goes after a minute unused. The limit is
	// also the default of a consumer that sets none, as the edges'
	// ephemeral ones: they go a minute after their edge, not 5 s.
	for _, stream := range []string{Stream, "OBJ_" + ModuleBucket} {
		if err := harden(ctx, js, stream, func(c *jetstream.StreamConfig) { c.ConsumerLimits.InactiveThreshold = consumerIdle }); err != nil {
			return nil, nil, err
		}
	}
	return kv, obj, nil
}

// consumerIdle is how long a consumer on a stream edges read may stay
// unused before the server removes it.
const consumerIdle = time.Minute

// harden applies edit to a stream's configuration where it changes it:
// the limits the bucket defaults leave open to the bus's writers. The
// edges bucket takes no rollups (a rollup purges every other key: an
// edge may write its own report, not wipe the others').
func harden(ctx context.Context, js jetstream.JetStream, stream string, edit func(*jetstream.StreamConfig)) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	was := cfg
	edit(&cfg)
	if reflect.DeepEqual(cfg, was) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("setting the limits of stream %s: %w", stream, err)
	}
	return nil
}

// LeadsBucket reports whether this hub is the one to compact the change
// bucket: in a cluster, the hub whose server leads the bucket's stream
// (on an external cluster, the hub connected to that server). Raising
// the compaction watermark is a read-modify-write of the stream's
// metadata, so two hubs compacting at once could leave the lower of two
// raises in place after the higher one's tombstones were removed, and an
// edge between the two would miss them. Without a cluster every hub
// leads.
func (h *Hub) LeadsBucket(ctx context.Context) (bool, error) {
	if h.Server != nil {
		if !h.Server.JetStreamIsClustered() {
			return true, nil
		}
		return h.Server.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, Stream), nil
	}
	st, err := h.JS.Stream(ctx, Stream)
	if err != nil {
		return false, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return false, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return true, nil
	}
	return h.Conn.ConnectedServerName() == info.Cluster.Leader, nil
}
