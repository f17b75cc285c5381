package node

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/gateway"
)

// gatewayLimits turns the gateway settings into the server's limits,
// resolving max_conns against the open-files limit.
func gatewayLimits(g config.Gateway) (gateway.Limits, error) {
	nofile, err := gateway.OpenFilesLimit()
	if err != nil {
		return gateway.Limits{}, err
	}
	maxConns, err := gateway.MaxConns(g.MaxConns, nofile)
	if err != nil {
		return gateway.Limits{}, err
	}
	return gateway.Limits{
		ReadHeaderTimeout: g.ReadHeaderTimeout.Duration,
		ReadTimeout:       g.ReadTimeout.Duration,
		WriteTimeout:      g.WriteTimeout.Duration,
		IdleTimeout:       g.IdleTimeout.Duration,
		MaxConns:          maxConns,
		MaxConnsPerIP:     g.MaxConnsPerIP,
		MaxHeaderBytes:    int(g.MaxHeaderBytes),
	}, nil
}

// openGateway listens on gateway.listen (so that a port in use fails the
// start rather than the first request) and prepares the server; Run serves.
func (n *Node) openGateway() error {
	if n.cfg.Gateway.Listen == "" {
		return nil
	}
	lim, err := gatewayLimits(n.cfg.Gateway)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", n.cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	srv, err := gateway.NewServer(l, n.functions, lim, n.log)
	if err != nil {
		l.Close()
		return err
	}
	n.gateway = srv
	return nil
}

// serveGateway serves the gateway until ctx ends, then drains it: requests
// in flight finish, bounded by their deadlines.
func (n *Node) serveGateway(ctx context.Context, wg *sync.WaitGroup) {
	if n.gateway == nil {
		return
	}
	wg.Go(func() {
		if err := n.gateway.Serve(); err != nil {
			n.log.Error("gateway stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.gateway.Shutdown(shutdown)
	})
	lim := n.gateway.Limits()
	n.log.Info("gateway listening", "addr", n.gateway.Addr().String(), "max_conns", lim.MaxConns, "max_conns_per_ip", lim.MaxConnsPerIP)
}

// reloadGateway checks the gateway settings of cfg and returns how to apply
// them; it changes nothing itself.
func (n *Node) reloadGateway(cfg config.Config) (apply func(), err error) {
	if n.gateway == nil || cfg.Gateway == n.cfg.Gateway {
		return func() { n.cfg.Gateway = cfg.Gateway }, nil
	}
	lim, err := gatewayLimits(cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return func() {
		// Validated above; SetLimits refuses nothing gatewayLimits makes.
		if err := n.gateway.SetLimits(lim); err != nil {
			n.log.Error("applying the gateway limits", "err", err)
			return
		}
		n.cfg.Gateway = cfg.Gateway
	}, nil
}

// GatewayStats reports the gateway's connection counts (zero without a
// gateway).
func (n *Node) GatewayStats() gateway.Stats {
	if n.gateway == nil {
		return gateway.Stats{}
	}
	return n.gateway.Stats()
}

// metricsLimits bound the optional TCP metrics listener as the gateway's
// bound its clients, with fixed values: scrapers need few connections, and
// the listener must not be a way around the gateway's caps to the node's
// descriptors.
var metricsLimits = gateway.Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       10 * time.Second,
	WriteTimeout:      30 * time.Second,
	IdleTimeout:       2 * time.Minute,
	MaxConns:          64,
	MaxConnsPerIP:     16,
	MaxHeaderBytes:    16 << 10,
}

// serveMetrics serves /metrics on admin.metrics_listen, if set, until ctx
// ends. A listener that cannot open is logged; the node runs on.
func (n *Node) serveMetrics(ctx context.Context, wg *sync.WaitGroup) {
	addr := n.cfg.Admin.MetricsListen
	if addr == "" {
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		n.log.Error("metrics listener stopped", "addr", addr, "err", err)
		return
	}
	srv, err := gateway.NewServer(l, n.metricsMux(), metricsLimits, n.log)
	if err != nil {
		l.Close()
		n.log.Error("metrics listener stopped", "addr", addr, "err", err)
		return
	}
	wg.Go(func() {
		if err := srv.Serve(); err != nil {
			n.log.Error("metrics listener stopped", "addr", addr, "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		srv.Close()
	})
}
