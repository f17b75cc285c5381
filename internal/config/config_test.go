package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/lists"
	"go.yaml.in/yaml/v3"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestLoadEmptyPathReturnsDefaults(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\") = %v", err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Load(\"\") = %+v, want defaults", cfg)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want not-exist", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	data := []byte("# " + strings.Repeat("x", MaxFileSize) + "\n")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Load of oversized file = %v, want size error", err)
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "aegis.yaml")
	if err := os.WriteFile(p, []byte("shield:\n  mode: monitor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if cfg.Shield.Mode != ModeMonitor {
		t.Errorf("mode = %q, want monitor", cfg.Shield.Mode)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "shield:\n", "shield: {}\n"} {
		cfg, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%q) = %v", in, err)
			continue
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("Parse(%q) = %+v, want defaults", in, cfg)
		}
	}
}

func TestParsePartial(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(*Config)
	}{
		{
			name: "mode only",
			in:   "shield: {mode: monitor}",
			want: func(c *Config) { c.Shield.Mode = ModeMonitor },
		},
		{
			name: "pps without burst doubles",
			in:   "shield:\n  rate_limit:\n    syn: {pps: 300}\n",
			want: func(c *Config) { c.Shield.RateLimit.SYN = Bucket{PPS: 300, Burst: 600} },
		},
		{
			name: "pps zero without burst",
			in:   "shield:\n  rate_limit:\n    icmp: {pps: 0}\n",
			want: func(c *Config) { c.Shield.RateLimit.ICMP = Bucket{} },
		},
		{
			name: "burst only keeps pps",
			in:   "shield:\n  rate_limit:\n    udp: {burst: 5}\n",
			want: func(c *Config) { c.Shield.RateLimit.UDP = Bucket{PPS: 1000, Burst: 5} },
		},
		{
			name: "double burst capped",
			in:   "shield:\n  rate_limit:\n    udp: {pps: 100000000}\n",
			want: func(c *Config) { c.Shield.RateLimit.UDP = Bucket{PPS: MaxPPS, Burst: MaxPPS} },
		},
		{
			name: "management addrs",
			in:   "admin:\n  management_addrs: [10.0.0.1, 192.168.0.0/16, '2001:db8::/32']\n",
			want: func(c *Config) {
				c.Admin.ManagementAddrs = []string{"10.0.0.1", "192.168.0.0/16", "2001:db8::/32"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

const fullConfig = `
state_dir: /srv/aegis
admin:
  socket: /run/aegis/a.sock
  management_addrs:
    - 10.0.0.1
    - 10.1.0.0/16
    - 2001:db8::1
shield:
  interfaces: [eth0, eth1]
  mode: monitor
  xdp_mode: native
  pin_path: /sys/fs/bpf/aegis2
  limits:
    ipv4: 1048576
    ipv6: 1
  rate_limit:
    syn: {pps: 1, burst: 1}
    udp: {pps: 0, burst: 0}
    icmp: {pps: 100000000, burst: 100000000}
    ipv4_prefix_len: 24
    ipv6_prefix_len: 48
    auto_block_factor: 1000
    auto_block_ttl: 24h
  long_header_chains: charge
  sweep_interval: 1s
gateway:
  listen: "[::]:80"
  read_header_timeout: 2s
  read_timeout: 20s
  write_timeout: 1m
  idle_timeout: 5s
  max_conns: 5000
  max_conns_per_ip: 0
  max_header_bytes: 16KiB
functions:
  max_module_size: 32MiB
  compile_timeout: 2s
  defaults:
    fuel: 5000
    timeout: 250ms
    memory: 1MiB
    max_request_body: 0
    max_response_body: 65536
    fetch_count: 0
    fetch_max_body: 1KB
    fetch_timeout: 1s
    kv_max_key: 64
    kv_max_value: 1K
    kv_quota: 1GiB
audit:
  dir: /var/log/aegis-audit
  max_file_bytes: 64MiB
fleet:
  servers: [nats://hub1:4222, tls://hub2:4222]
  name: edge-7
  trusted_keys: [/etc/aegis/ops.pub]
  controller_key: /etc/aegis/controller.pub
  credentials: /etc/aegis/edge.creds
  tls: {ca: /etc/aegis/ca.pem, cert: /etc/aegis/edge.pem, key: /etc/aegis/edge.key}
  broadest: {block_ipv4: 16, block_ipv6: 32, allow_ipv4: 0, allow_ipv6: 0}
  reconcile_interval: 10s
  max_clock_skew: 1m
  propose_auto_blocks: true
hub:
  listen: 0.0.0.0:4222
  server_name: hub-a
  cluster: {name: aegis, listen: 0.0.0.0:6222, routes: [nats-route://hub-b:6222], password: route-secret}
  replicas: 3
  operator_keys: [/etc/aegis/ops.pub]
  controller_key: /etc/aegis/controller.key
  auto_block: {min_edges: 2, window: 30s, ttl: 10m, max_ttl: 1h}
  tls: {cert: /etc/aegis/hub.pem, key: /etc/aegis/hub.key}
  users: [{name: edge-7, password: secret, role: edge}]
  tombstone_retention: 48h
`

func TestParseFull(t *testing.T) {
	got, err := Parse([]byte(fullConfig))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	want := Config{
		StateDir: "/srv/aegis",
		Admin: Admin{
			Socket:          "/run/aegis/a.sock",
			ManagementAddrs: []string{"10.0.0.1", "10.1.0.0/16", "2001:db8::1"},
		},
		Shield: Shield{
			Interfaces: []string{"eth0", "eth1"},
			Mode:       ModeMonitor,
			XDPMode:    XDPModeNative,
			PinPath:    "/sys/fs/bpf/aegis2",
			Limits:     Limits{IPv4: lists.CeilingV4, IPv6: 1},
			RateLimit: RateLimit{
				SYN:             Bucket{PPS: 1, Burst: 1},
				UDP:             Bucket{},
				ICMP:            Bucket{PPS: MaxPPS, Burst: MaxPPS},
				IPv4PrefixLen:   24,
				IPv6PrefixLen:   48,
				AutoBlockFactor: 1000,
				AutoBlockTTL:    Duration{24 * time.Hour},
			},
			LongHeaderChains: LongChainsCharge,
			SweepInterval:    Duration{time.Second},
		},
		Gateway: Gateway{
			Listen: "[::]:80", ReadHeaderTimeout: Duration{2 * time.Second}, ReadTimeout: Duration{20 * time.Second},
			WriteTimeout: Duration{time.Minute}, IdleTimeout: Duration{5 * time.Second}, MaxConns: 5000, MaxConnsPerIP: 0,
			MaxHeaderBytes: 16 << 10,
		},
		Functions: Functions{
			MaxModuleSize:  32 << 20,
			CompileTimeout: Duration{2 * time.Second},
			Defaults: FunctionLimits{
				Fuel: 5000, Timeout: Duration{250 * time.Millisecond}, Memory: 1 << 20,
				MaxRequestBody: 0, MaxResponseBody: 65536, FetchCount: 0, FetchMaxBody: 1000,
				FetchTimeout: Duration{time.Second}, KVMaxKey: 64, KVMaxValue: 1024, KVQuota: 1 << 30,
			},
		},
		Audit: Audit{Dir: "/var/log/aegis-audit", MaxFileBytes: 64 << 20},
		Fleet: Fleet{
			Servers: []string{"nats://hub1:4222", "tls://hub2:4222"}, Name: "edge-7",
			TrustedKeys: []string{"/etc/aegis/ops.pub"}, ControllerKey: "/etc/aegis/controller.pub",
			Credentials:       "/etc/aegis/edge.creds",
			TLS:               TLSFiles{CA: "/etc/aegis/ca.pem", Cert: "/etc/aegis/edge.pem", Key: "/etc/aegis/edge.key"},
			Broadest:          FleetBroadest{BlockIPv4: 16, BlockIPv6: 32},
			ReconcileInterval: Duration{10 * time.Second}, MaxClockSkew: Duration{time.Minute}, ProposeAutoBlocks: true,
		},
		Hub: Hub{
			Listen: "0.0.0.0:4222", ServerName: "hub-a",
			Cluster:  HubCluster{Name: "aegis", Listen: "0.0.0.0:6222", Routes: []string{"nats-route://hub-b:6222"}, Password: "route-secret"},
			Replicas: 3, OperatorKeys: []string{"/etc/aegis/ops.pub"}, ControllerKey: "/etc/aegis/controller.key",
			AutoBlock:          HubAutoBlock{MinEdges: 2, Window: Duration{30 * time.Second}, TTL: Duration{10 * time.Minute}, MaxTTL: Duration{time.Hour}},
			TLS:                TLSFiles{Cert: "/etc/aegis/hub.pem", Key: "/etc/aegis/hub.key"},
			Users:              []HubUser{{Name: "edge-7", Password: "secret", Role: "edge"}},
			TombstoneRetention: Duration{48 * time.Hour},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
	prefixes := got.Admin.ManagementPrefixes()
	wantP := []string{"10.0.0.1/32", "10.1.0.0/16", "2001:db8::1/128"}
	if len(prefixes) != len(wantP) {
		t.Fatalf("ManagementPrefixes = %v, want %v", prefixes, wantP)
	}
	for i, p := range prefixes {
		if p.String() != wantP[i] {
			t.Errorf("ManagementPrefixes[%d] = %v, want %v", i, p, wantP[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // substring of the error, starting with the key
	}{
		{"unknown top-level key", "bogus: 1", "bogus: unknown key"},
		{"unknown nested key", "shield:\n  limits:\n    ipv5: 3\n", "shield.limits.ipv5: unknown key"},
		{"unknown bucket key", "shield: {rate_limit: {syn: {ppss: 3}}}", "shield.rate_limit.syn.ppss: unknown key"},
		{"section not a mapping", "shield: 3", "shield: must be a mapping"},
		{"top level not a mapping", "- a\n- b\n", "(top level): must be a mapping"},
		{"int wrong type", "shield: {limits: {ipv4: lots}}", "shield.limits.ipv4: line 1: cannot unmarshal"},
		{"negative pps", "shield: {rate_limit: {syn: {pps: -1}}}", "shield.rate_limit.syn.pps: line 1: cannot unmarshal"},
		{"pps overflows uint32", "shield: {rate_limit: {syn: {pps: 5000000000}}}", "shield.rate_limit.syn.pps: line 1: cannot unmarshal"},
		{"interfaces not a list", "shield: {interfaces: eth0}", "shield.interfaces: line 1: cannot unmarshal"},
		{"bad duration", "shield: {sweep_interval: soon}", `shield.sweep_interval: must be a duration string such as "10s", got "soon"`},
		{"bare number duration", "shield: {sweep_interval: 10}", `shield.sweep_interval: must be a duration string`},
		{"bad ttl duration", "shield: {rate_limit: {auto_block_ttl: 5 minutes}}", "shield.rate_limit.auto_block_ttl: must be a duration string"},
		{"alias", "a: &x 1\n", "a: unknown key"},
		{"alias use", "admin: {socket: &s /run/x}\nstate_dir: *s\n", "state_dir: YAML aliases are not supported"},
		{"multiple documents", "shield: {mode: monitor}\n---\nshield: {mode: enforce}\n", "multiple YAML documents"},
		{"duplicate key", "state_dir: /a\nstate_dir: /b\n", "already defined"},
		{"syntax", "shield: [\n", "parsing config"},
		{"gateway listen", "gateway: {listen: 'localhost:80'}", `gateway.listen: must be IP:port`},
		{"metrics listen", "admin: {metrics_listen: ':9400'}", `admin.metrics_listen: must be IP:port`},
		{"gateway timeout zero", "gateway: {read_timeout: 0s}", `gateway.read_timeout: must be between 1ms and 1h0m0s, got 0s`},
		{"gateway timeout negative", "gateway: {idle_timeout: -1s}", `gateway.idle_timeout: must be between 1ms and 1h0m0s, got -1s`},
		{"gateway timeout too long", "gateway: {write_timeout: 2h}", `gateway.write_timeout: must be between 1ms and 1h0m0s, got 2h0m0s`},
		{"gateway timeout bare number", "gateway: {read_header_timeout: 10}", `gateway.read_header_timeout: must be a duration string`},
		{"gateway header timeout over read timeout", "gateway: {read_header_timeout: 1m, read_timeout: 30s}", `gateway.read_header_timeout: must not exceed gateway.read_timeout (30s)`},
		{"gateway max conns negative", "gateway: {max_conns: -1}", `gateway.max_conns: must be between 0 and 1048576, got -1`},
		{"gateway max conns not a number", "gateway: {max_conns: many}", `gateway.max_conns: line 1: cannot unmarshal`},
		{"gateway header bytes too small", "gateway: {max_header_bytes: 1KiB}", `gateway.max_header_bytes: must be between 4KiB and 1MiB, got 1KiB`},
		{"gateway per-ip over total", "gateway: {max_conns: 10, max_conns_per_ip: 11}", `gateway.max_conns_per_ip: must not exceed gateway.max_conns (10), got 11`},
		{"bad size", "functions: {defaults: {memory: lots}}", `functions.defaults.memory: invalid size "lots"`},
		{"negative size", "functions: {max_module_size: -1}", `functions.max_module_size: invalid size "-1"`},
		{"memory not pages", "functions: {defaults: {memory: 100000}}", `functions.defaults.memory: must be a multiple of the 64KiB Wasm page`},
		{"memory over 4GiB", "functions: {defaults: {memory: 8GiB}}", `functions.defaults.memory: must be between 64KiB and 4GiB`},
		{"fuel zero", "functions: {defaults: {fuel: 0}}", `functions.defaults.fuel: must be between 1 and`},
		{"compile timeout too short", "functions: {compile_timeout: 1ms}", `functions.compile_timeout: must be between 100ms and 10m0s`},
		{"unknown function key", "functions: {defaults: {cpu: 1}}", `functions.defaults.cpu: unknown key`},
		{"audit dir relative", "audit: {dir: audit}", `audit.dir: must be an absolute path, got "audit"`},
		{"audit file too small", "audit: {max_file_bytes: 1K}", `audit.max_file_bytes: must be between 4KiB and 1GiB`},
		{"unknown audit key", "audit: {path: /x}", `audit.path: unknown key`},
		{"audit dir is state_dir", "state_dir: /srv/aegis\naudit: {dir: /srv/aegis/}", `audit.dir: must not be state_dir or hold it`},
		{"audit dir holds state_dir", "state_dir: /srv/aegis\naudit: {dir: /srv}", `audit.dir: must not be state_dir or hold it`},

		{"state_dir relative", "state_dir: var/lib/aegis", `state_dir: must be an absolute path, got "var/lib/aegis"`},
		{"state_dir empty", "state_dir: ''", `state_dir: must be an absolute path, got ""`},
		{"socket relative", "admin: {socket: admin.sock}", `admin.socket: must be an absolute path`},
		{"socket too long", "admin: {socket: /" + strings.Repeat("s", 120) + "}", "admin.socket: must be at most 107 bytes"},
		{"management addr", "admin: {management_addrs: [10.0.0.1, nope]}", `admin.management_addrs[1]: must be an IP address or CIDR, got "nope"`},
		{"management zone", "admin: {management_addrs: ['fe80::1%eth0']}", `admin.management_addrs[0]: must be an IP address or CIDR`},
		{"management host bits", "admin: {management_addrs: [10.0.0.1/8]}", `admin.management_addrs[0]: must be an IP address or CIDR, got "10.0.0.1/8"`},
		{"interface empty", "shield: {interfaces: ['']}", "shield.interfaces[0]: must not be empty"},
		{"interface too long", "shield: {interfaces: [abcdefghijklmnop]}", "shield.interfaces[0]: must be at most 15 bytes"},
		{"interface slash", "shield: {interfaces: [eth0, a/b]}", "shield.interfaces[1]: must not contain"},
		{"interface space", "shield: {interfaces: ['a b']}", "shield.interfaces[0]: must not contain"},
		{"interface dot", "shield: {interfaces: ['..']}", `shield.interfaces[0]: invalid interface name ".."`},
		{"interface duplicate", "shield: {interfaces: [eth0, eth1, eth0]}", `shield.interfaces[2]: duplicate interface "eth0" (also shield.interfaces[0])`},
		{"mode", "shield: {mode: block}", `shield.mode: must be one of "enforce", "monitor", got "block"`},
		{"xdp_mode", "shield: {xdp_mode: offload}", `shield.xdp_mode: must be one of "auto", "native", "generic", got "offload"`},
		{"long_header_chains", "shield: {long_header_chains: pass}", `shield.long_header_chains: must be one of "drop", "charge", got "pass"`},
		{"too many management addrs", "admin: {management_addrs: [" + strings.Repeat("10.0.0.1, ", MaxManagementAddrs) + "10.0.0.2]}", "admin.management_addrs: must hold at most 1024 entries, got 1025"},
		{"pin_path relative", "shield: {pin_path: sys/fs/bpf/aegis}", "shield.pin_path: must be an absolute path"},
		{"pin_path outside bpffs", "shield: {pin_path: /tmp/aegis}", "shield.pin_path: must be under /sys/fs/bpf/"},
		{"pin_path bpffs root", "shield: {pin_path: /sys/fs/bpf}", "shield.pin_path: must be under /sys/fs/bpf/"},
		{"pin_path escapes", "shield: {pin_path: /sys/fs/bpf/../x}", "shield.pin_path: must be under /sys/fs/bpf/"},
		{"ipv4 zero", "shield: {limits: {ipv4: 0}}", "shield.limits.ipv4: must be between 1 and 1048576, got 0"},
		{"ipv4 too big", "shield: {limits: {ipv4: 1048577}}", "shield.limits.ipv4: must be between 1 and 1048576, got 1048577"},
		{"ipv6 too big", "shield: {limits: {ipv6: 524289}}", "shield.limits.ipv6: must be between 1 and 524288, got 524289"},
		{"pps too big", "shield: {rate_limit: {udp: {pps: 100000001, burst: 1}}}", "shield.rate_limit.udp.pps: must be at most 100000000, got 100000001"},
		{"burst too big", "shield: {rate_limit: {icmp: {burst: 100000001}}}", "shield.rate_limit.icmp.burst: must be at most 100000000"},
		{"burst zero with pps", "shield: {rate_limit: {syn: {pps: 5, burst: 0}}}", "shield.rate_limit.syn.burst: must be at least 1 when pps is set"},
		{"ipv4 prefix len", "shield: {rate_limit: {ipv4_prefix_len: 7}}", "shield.rate_limit.ipv4_prefix_len: must be between 8 and 32, got 7"},
		{"ipv6 prefix len", "shield: {rate_limit: {ipv6_prefix_len: 129}}", "shield.rate_limit.ipv6_prefix_len: must be between 16 and 128, got 129"},
		{"auto block factor", "shield: {rate_limit: {auto_block_factor: 1}}", "shield.rate_limit.auto_block_factor: must be between 2 and 1000, got 1"},
		{"auto block ttl", "shield: {rate_limit: {auto_block_ttl: 25h}}", "shield.rate_limit.auto_block_ttl: must be between 1s and 24h0m0s, got 25h0m0s"},
		{"sweep interval short", "shield: {sweep_interval: 500ms}", "shield.sweep_interval: must be between 1s and 1h0m0s, got 500ms"},
		{"sweep interval negative", "shield: {sweep_interval: -1s}", "shield.sweep_interval: must be between 1s and 1h0m0s, got -1s"},
		{"fleet server scheme", "fleet: {servers: [http://hub:4222], trusted_keys: [/k.pub]}", "fleet.servers[0]: must be nats://host:port or tls://host:port"},
		{"fleet without keys", "fleet: {servers: [nats://hub:4222]}", "fleet.trusted_keys: must name at least one key"},
		{"fleet key relative", "fleet: {servers: [nats://hub:4222], trusted_keys: [ops.pub]}", "fleet.trusted_keys[0]: must be an absolute path"},
		{"fleet name", "fleet: {name: 'edge 1'}", "fleet.name: invalid edge name"},
		{"fleet broadest", "fleet: {broadest: {block_ipv4: 33}}", "fleet.broadest.block_ipv4: must be between 0 and 32, got 33"},
		{"fleet tls half", "fleet: {tls: {cert: /c.pem}}", "fleet.tls: cert and key go together"},
		{"fleet propose alone", "fleet: {propose_auto_blocks: true}", "fleet.propose_auto_blocks: needs fleet.servers"},
		{"hub listen", "hub: {listen: 4222}", "hub.listen: must be host:port"},
		{"hub replicas", "hub: {replicas: 2}", "hub.replicas: must be 1 or 3, got 2"},
		{"hub replicas alone", "hub: {replicas: 3}", "hub.replicas: 3 needs a cluster"},
		{"hub routes alone", "hub: {cluster: {routes: [nats-route://10.0.0.2:6222]}}", "hub.cluster.routes: set without hub.cluster.listen"},
		{"hub cluster name alone", "hub: {cluster: {name: edge}}", "hub.cluster.name: set without hub.cluster.listen"},
		{"hub ttl over max", "hub: {auto_block: {ttl: 2h, max_ttl: 1h}}", "hub.auto_block.ttl: must be between 1m0s and 1h0m0s, got 2h0m0s"},
		{"hub max ttl", "hub: {auto_block: {max_ttl: 48h}}", "hub.auto_block.max_ttl: must be between 1m0s and 24h0m0s"},
		{"hub min edges", "hub: {auto_block: {min_edges: 0}}", "hub.auto_block.min_edges: must be between 1 and 10000, got 0"},
		{"hub user role", "hub: {users: [{name: e1, password: p, role: admin}]}", `hub.users[0].role: must be one of "edge", "publisher", got "admin"`},
		{"hub user twice", "hub: {users: [{name: e1, password: p, role: edge}, {name: e1, password: q, role: edge}]}", `hub.users[1].name: duplicate user "e1"`},
		{"hub tls without cert", "hub: {tls: {ca: /ca.pem}}", "hub.tls: a server needs cert and key"},
		{"hub cluster without route authentication", "hub: {cluster: {name: c, listen: '0.0.0.0:6222'}}", "hub.cluster.password: routes need authentication"},
		{"hub user named as the hub", "hub: {users: [{name: aegis-hub, password: x, role: publisher}]}", "hub.users[0].name: aegis-hub is the hub's own user"},
		{"hub external with cluster", "hub: {nats_url: 'nats://a:4222', cluster: {name: c, listen: '0.0.0.0:6222'}}", "hub.nats_url: an external cluster takes no hub.cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error =\n%v\nwant it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	_, err := Parse([]byte("state_dir: rel\nshield: {mode: x, limits: {ipv4: 0}}\n"))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	for _, key := range []string{"state_dir:", "shield.mode:", "shield.limits.ipv4:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not mention %s", err, key)
		}
	}
	_, err = Parse([]byte("foo: 1\nshield: {bar: 2}\n"))
	if err == nil || !strings.Contains(err.Error(), "foo: unknown key") || !strings.Contains(err.Error(), "shield.bar: unknown key") {
		t.Errorf("unknown keys error = %v, want both keys named", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxFileSize+1))
	if err == nil {
		t.Fatal("Parse of oversized input succeeded")
	}
}

func TestDurationRoundTrip(t *testing.T) {
	out, err := yaml.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "sweep_interval: 10s") {
		t.Errorf("marshalled config does not contain duration string:\n%s", out)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(Default())) = %v", err)
	}
	if !reflect.DeepEqual(normalize(got), Default()) {
		t.Errorf("round trip = %+v, want defaults", got)
	}
}

func TestAuditDir(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"default under state_dir", "state_dir: /srv/aegis", "/srv/aegis/audit"},
		{"explicit dir", "state_dir: /srv/aegis\naudit: {dir: /var/log/aegis}", "/var/log/aegis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if got := cfg.AuditDir(); got != tt.want {
				t.Errorf("AuditDir = %q, want %q", got, tt.want)
			}
			// The anchor is outside the log's directory, in state_dir.
			if got := cfg.AuditAnchor(); got != "/srv/aegis/audit.anchor" {
				t.Errorf("AuditAnchor = %q", got)
			}
		})
	}
}
