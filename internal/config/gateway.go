package config

import (
	"net/netip"
	"time"
)

// Gateway configures the public HTTP listener that serves edge functions
// and what its clients may hold of the node: every connection costs a file
// descriptor, so each is bounded in time and in number.
type Gateway struct {
	// Listen is the TCP address, host:port; empty disables the gateway.
	Listen string `yaml:"listen"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, headers and body. It is
	// a deadline from the request's first byte: a body trickled a byte at
	// a time does not extend it.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing the answer. It counts from the end of
	// the request, on top of the function's own timeout.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes a kept-alive connection that waits this long for
	// its next request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConns caps the gateway's open connections; 0 derives the cap
	// from the open-files limit (RLIMIT_NOFILE), keeping a reserve for
	// the node itself.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP caps one client's open connections (an IPv6 client is
	// its /64); 0 lifts the per-client cap.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxHeaderBytes bounds a request's headers (431 over it): with
	// max_conns connections reading headers, it bounds their memory.
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
}

// Bounds on the gateway's settings.
const (
	// MaxGatewayConns is the largest configurable connection cap.
	MaxGatewayConns = 1 << 20
	// MaxGatewayTimeout is the longest configurable gateway timeout.
	MaxGatewayTimeout = time.Hour
)

func defaultGateway() Gateway {
	return Gateway{
		Listen:            "127.0.0.1:8080",
		ReadHeaderTimeout: Duration{10 * time.Second},
		ReadTimeout:       Duration{30 * time.Second},
		WriteTimeout:      Duration{30 * time.Second},
		IdleTimeout:       Duration{60 * time.Second},
		MaxConns:          0,
		MaxConnsPerIP:     128,
		MaxHeaderBytes:    64 << 10,
	}
}

func (v *validator) gateway(g Gateway) {
	if g.Listen != "" {
		if _, err := netip.ParseAddrPort(g.Listen); err != nil {
			v.addf("gateway.listen", "must be IP:port such as 127.0.0.1:8080 or [::]:80, got %q", g.Listen)
		}
	}
	v.durRange("gateway.read_header_timeout", g.ReadHeaderTimeout, time.Millisecond, MaxGatewayTimeout)
	v.durRange("gateway.read_timeout", g.ReadTimeout, time.Millisecond, MaxGatewayTimeout)
	v.durRange("gateway.write_timeout", g.WriteTimeout, time.Millisecond, MaxGatewayTimeout)
	v.durRange("gateway.idle_timeout", g.IdleTimeout, time.Millisecond, MaxGatewayTimeout)
	if g.ReadHeaderTimeout.Duration > g.ReadTimeout.Duration {
		v.addf("gateway.read_header_timeout", "must not exceed gateway.read_timeout (%s), which bounds the headers too; got %s",
			g.ReadTimeout.Duration, g.ReadHeaderTimeout.Duration)
	}
	v.intRange("gateway.max_conns", g.MaxConns, 0, MaxGatewayConns)
	v.intRange("gateway.max_conns_per_ip", g.MaxConnsPerIP, 0, MaxGatewayConns)
	v.sizeRange("gateway.max_header_bytes", g.MaxHeaderBytes, 4<<10, 1<<20)
	if g.MaxConns > 0 && g.MaxConnsPerIP > g.MaxConns {
		v.addf("gateway.max_conns_per_ip", "must not exceed gateway.max_conns (%d), got %d", g.MaxConns, g.MaxConnsPerIP)
	}
}
