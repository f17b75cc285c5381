package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

// Fleet makes the node an edge that follows a fleet hub (issue 14's
// `fleet.*`). With no servers the node is standalone.
type Fleet struct {
	// Servers are the hub's NATS URLs (nats:// or tls://); empty means
	// the node follows no fleet.
	Servers []string `yaml:"servers"`
	// Name is this edge's name in the fleet (its report key and, with
	// hub.users, its bus user); the host name when empty.
	Name string `yaml:"name"`
	// TrustedKeys are the operators' public keys (PEM files, absolute
	// paths): any change one of them signs counts.
	TrustedKeys []string `yaml:"trusted_keys"`
	// ControllerKey is the hub controller's public key (PEM file): changes
	// it signs count only as automatic-block promotions. Empty: none count.
	ControllerKey string `yaml:"controller_key"`
	// Credentials is a file with the edge's bus account: a NATS
	// credentials file (JWT and seed) or one line "user:password".
	Credentials string   `yaml:"credentials"`
	TLS         TLSFiles `yaml:"tls"`
	// Broadest is the broadest prefix a fleet entry may carry, per list
	// and family; broader ones are refused (too_broad).
	Broadest FleetBroadest `yaml:"broadest"`
	// ReconcileInterval is how often the edge re-reads the hub's stream
	// identity and compaction watermark while connected.
	ReconcileInterval Duration `yaml:"reconcile_interval"`
	// MaxClockSkew is how far a change's issue or expiry time may be off
	// this edge's clock before it is refused as future or expired.
	MaxClockSkew Duration `yaml:"max_clock_skew"`
	// ProposeAutoBlocks reports this edge's automatic blocks to the hub,
	// which promotes a source reported by enough edges to a fleet block.
	ProposeAutoBlocks bool `yaml:"propose_auto_blocks"`
}

// FleetBroadest bounds the prefixes of fleet entries, as prefix lengths.
type FleetBroadest struct {
	BlockIPv4 int `yaml:"block_ipv4"`
	BlockIPv6 int `yaml:"block_ipv6"`
	AllowIPv4 int `yaml:"allow_ipv4"`
	AllowIPv6 int `yaml:"allow_ipv6"`
}

// TLSFiles names PEM files for a TLS connection. For an edge, CA verifies
// the hub and Cert and Key are its client certificate; for a hub, Cert and
// Key are its server certificate and CA, when set, requires clients to
// present a certificate it signed (mutual TLS).
type TLSFiles struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Enabled reports whether any TLS file is set.
func (t TLSFiles) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// Hub configures `aegis hub`: the embedded JetStream server (or an
// external cluster) and the fleet controller.
type Hub struct {
	// Listen is the client address of the embedded server.
	Listen string `yaml:"listen"`
	// ServerName names this hub in a cluster; NATS makes one up if empty.
	ServerName string     `yaml:"server_name"`
	Cluster    HubCluster `yaml:"cluster"`
	// Replicas of the buckets: 1, or 3 for a three-hub cluster.
	Replicas int `yaml:"replicas"`
	// NATSURL, if set, is an existing JetStream cluster (nats-server 2.11
	// or newer, comma-separated URLs): no embedded server is started.
	NATSURL string `yaml:"nats_url"`
	// OperatorKeys are the public keys (PEM files) allowed to sign
	// changes. The controller counts a record it finds under a key as an
	// operator's decision only if one of them signed it; empty, it weighs
	// held records unverified.
	OperatorKeys []string `yaml:"operator_keys"`
	// ControllerKey is the controller's private key (PEM file); without
	// it the controller promotes nothing.
	ControllerKey string       `yaml:"controller_key"`
	AutoBlock     HubAutoBlock `yaml:"auto_block"`
	// TLS of the client listener; ClusterTLS of the routes between hubs.
	TLS        TLSFiles `yaml:"tls"`
	ClusterTLS TLSFiles `yaml:"cluster_tls"`
	// Users, if any, must authenticate to the embedded server: role edge
	// may only read (and write its own report), role publisher may write.
	Users []HubUser `yaml:"users"`
	// Credentials is the controller's bus account on an external cluster
	// (nats_url): a NATS credentials file or one line "user:password".
	Credentials string `yaml:"credentials"`
	// TombstoneRetention is how long signed deletions are kept; older ones
	// are removed and edges that missed them reconcile fully.
	TombstoneRetention Duration `yaml:"tombstone_retention"`
}

// HubCluster joins hubs into one JetStream cluster.
type HubCluster struct {
	Name   string   `yaml:"name"`
	Listen string   `yaml:"listen"`
	Routes []string `yaml:"routes"`
	// Password authenticates the routes between the hubs (the same on
	// each); required with Listen unless cluster_tls has a ca.
	Password string `yaml:"password"`
}

// HubAutoBlock is the controller's promotion rule: a source reported by
// MinEdges edges within Window becomes a fleet block for TTL (at most
// MaxTTL, which edges also bound).
type HubAutoBlock struct {
	MinEdges int      `yaml:"min_edges"`
	Window   Duration `yaml:"window"`
	TTL      Duration `yaml:"ttl"`
	MaxTTL   Duration `yaml:"max_ttl"`
}

// HubUser is a bus account of the embedded server.
type HubUser struct {
	Name string `yaml:"name"`
	// Password is plain text or a bcrypt hash ("$2a$...").
	Password string `yaml:"password"`
	// Role is "edge" or "publisher".
	Role string `yaml:"role"`
}

// Hub user roles.
const (
	HubRoleEdge      = "edge"
	HubRolePublisher = "publisher"
)

// Bounds and defaults of the fleet settings.
const (
	DefaultHubListen = "127.0.0.1:4222"
	// DefaultAutoBlockMaxTTL matches the edges' own bound on a controller
	// promotion.
	DefaultAutoBlockMaxTTL = 24 * time.Hour
	MaxAutoBlockMinEdges   = 10_000
)

func defaultFleet() Fleet {
	return Fleet{
		// A fleet entry broader than these is far more likely a typo than
		// a decision; operators widen them deliberately.
		Broadest:          FleetBroadest{BlockIPv4: 8, BlockIPv6: 16, AllowIPv4: 8, AllowIPv6: 16},
		ReconcileInterval: Duration{30 * time.Second},
		MaxClockSkew:      Duration{5 * time.Minute},
	}
}

func defaultHub() Hub {
	return Hub{
		Listen:   DefaultHubListen,
		Replicas: 1,
		AutoBlock: HubAutoBlock{
			MinEdges: 3,
			Window:   Duration{time.Minute},
			TTL:      Duration{time.Hour},
			MaxTTL:   Duration{DefaultAutoBlockMaxTTL},
		},
		TombstoneRetention: Duration{7 * 24 * time.Hour},
	}
}

func (v *validator) fleet(f Fleet) {
	for i, s := range f.Servers {
		v.natsURL(fmt.Sprintf("fleet.servers[%d]", i), s)
	}
	if len(f.Servers) > 0 && len(f.TrustedKeys) == 0 && f.ControllerKey == "" {
		v.addf("fleet.trusted_keys", "must name at least one key when fleet.servers is set (no change would count)")
	}
	if f.Name != "" {
		if err := change.ValidEdgeName(f.Name); err != nil {
			v.addf("fleet.name", "%v", err)
		}
	}
	for i, k := range f.TrustedKeys {
		v.absPath(fmt.Sprintf("fleet.trusted_keys[%d]", i), k)
	}
	v.optAbsPath("fleet.controller_key", f.ControllerKey)
	v.optAbsPath("fleet.credentials", f.Credentials)
	v.tlsFiles("fleet.tls", f.TLS, false)
	v.intRange("fleet.broadest.block_ipv4", f.Broadest.BlockIPv4, 0, 32)
	v.intRange("fleet.broadest.allow_ipv4", f.Broadest.AllowIPv4, 0, 32)
	v.intRange("fleet.broadest.block_ipv6", f.Broadest.BlockIPv6, 0, 128)
	v.intRange("fleet.broadest.allow_ipv6", f.Broadest.AllowIPv6, 0, 128)
	v.durRange("fleet.reconcile_interval", f.ReconcileInterval, time.Second, 24*time.Hour)
	v.durRange("fleet.max_clock_skew", f.MaxClockSkew, time.Second, 24*time.Hour)
	if f.ProposeAutoBlocks && len(f.Servers) == 0 {
		v.addf("fleet.propose_auto_blocks", "needs fleet.servers")
	}
}

func (v *validator) hub(h Hub) {
	if h.NATSURL == "" {
		v.hostPort("hub.listen", h.Listen)
	} else {
		for i, u := range splitURLs(h.NATSURL) {
			v.natsURL(fmt.Sprintf("hub.nats_url[%d]", i), u)
		}
		if h.Cluster.Listen != "" || len(h.Users) > 0 {
			v.addf("hub.nats_url", "an external cluster takes no hub.cluster or hub.users (configure them on its servers)")
		}
	}
	if h.Cluster.Listen != "" {
		v.hostPort("hub.cluster.listen", h.Cluster.Listen)
		if h.Cluster.Name == "" {
			v.addf("hub.cluster.name", "must be set with hub.cluster.listen")
		}
		if h.Cluster.Password == "" && h.ClusterTLS.CA == "" {
			v.addf("hub.cluster.password", "routes need authentication: set it, or hub.cluster_tls with a ca (a server that joins a route writes past every user's permissions)")
		}
	}
	if h.Cluster.Listen == "" {
		// Without a cluster listener these would be ignored, and the hub
		// run alone where the operator meant a cluster.
		if h.Cluster.Name != "" {
			v.addf("hub.cluster.name", "set without hub.cluster.listen")
		}
		if len(h.Cluster.Routes) > 0 {
			v.addf("hub.cluster.routes", "set without hub.cluster.listen")
		}
	}
	for i, r := range h.Cluster.Routes {
		if u, err := url.Parse(r); err != nil || u.Scheme != "nats-route" && u.Scheme != "nats" || u.Host == "" {
			v.addf(fmt.Sprintf("hub.cluster.routes[%d]", i), "must be nats-route://host:port, got %q", r)
		}
	}
	if h.Replicas != 1 && h.Replicas != 3 {
		v.addf("hub.replicas", "must be 1 or 3, got %d", h.Replicas)
	} else if h.Replicas == 3 && h.NATSURL == "" && h.Cluster.Listen == "" {
		// One embedded server cannot hold three replicas: the hub would
		// wait for peers that never come.
		v.addf("hub.replicas", "3 needs a cluster: hub.cluster with three hubs, or hub.nats_url")
	}
	for i, k := range h.OperatorKeys {
		v.absPath(fmt.Sprintf("hub.operator_keys[%d]", i), k)
	}
	v.optAbsPath("hub.controller_key", h.ControllerKey)
	v.optAbsPath("hub.credentials", h.Credentials)
	a := h.AutoBlock
	v.intRange("hub.auto_block.min_edges", a.MinEdges, 1, MaxAutoBlockMinEdges)
	v.durRange("hub.auto_block.window", a.Window, time.Second, 24*time.Hour)
	v.durRange("hub.auto_block.max_ttl", a.MaxTTL, time.Minute, DefaultAutoBlockMaxTTL)
	v.durRange("hub.auto_block.ttl", a.TTL, time.Minute, a.MaxTTL.Duration)
	v.tlsFiles("hub.tls", h.TLS, true)
	v.tlsFiles("hub.cluster_tls", h.ClusterTLS, true)
	seen := map[string]bool{}
	for i, u := range h.Users {
		key := fmt.Sprintf("hub.users[%d]", i)
		if err := change.ValidEdgeName(u.Name); err != nil {
			v.addf(key+".name", "%v", err)
		} else if u.Name == "aegis-hub" {
			v.addf(key+".name", "aegis-hub is the hub's own user")
		} else if seen[u.Name] {
			v.addf(key+".name", "duplicate user %q", u.Name)
		}
		seen[u.Name] = true
		if u.Password == "" {
			v.addf(key+".password", "must be set")
		}
		v.oneOf(key+".role", u.Role, HubRoleEdge, HubRolePublisher)
	}
	v.durRange("hub.tombstone_retention", h.TombstoneRetention, time.Hour, 365*24*time.Hour)
}

func (v *validator) natsURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.Path != "" && u.Path != "/" {
		v.addf(key, "must be nats://host:port or tls://host:port, got %q", s)
	}
}

func (v *validator) hostPort(key, s string) {
	u, err := url.Parse("x://" + s)
	if err != nil || u.Host != s || u.Port() == "" {
		v.addf(key, "must be host:port, got %q", s)
	}
}

func (v *validator) optAbsPath(key, p string) {
	if p != "" {
		v.absPath(key, p)
	}
}

// tlsFiles checks a TLS block: absolute paths, and a certificate with its
// key. server says whether a certificate is required once any file is set.
func (v *validator) tlsFiles(key string, t TLSFiles, server bool) {
	v.optAbsPath(key+".ca", t.CA)
	v.optAbsPath(key+".cert", t.Cert)
	v.optAbsPath(key+".key", t.Key)
	if (t.Cert == "") != (t.Key == "") {
		v.addf(key, "cert and key go together")
	}
	if server && t.Enabled() && t.Cert == "" {
		v.addf(key, "a server needs cert and key")
	}
}

// splitURLs splits a comma-separated URL list.
func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
