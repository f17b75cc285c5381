package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/fleet/controller"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/keyfile"
)

// compactEvery is how often the hub removes tombstones older than
// hub.tombstone_retention.
const compactEvery = time.Hour

func newHubCmd(e *env) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "hub [--config FILE]",
		Short: "Run a fleet hub: the JetStream server the edges follow",
		Long: "Run the fleet's hub (docs/FLEET.md): an embedded NATS server with JetStream holding the signed " +
			"changes and function modules, or a client of an existing JetStream cluster (hub.nats_url). " +
			"It reads the hub.* and state_dir keys of the configuration.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(e.stderr, nil))
			opts, err := hubOptions(cfg, log)
			if err != nil {
				return err
			}
			return runHub(cmd.Context(), cfg, opts, log)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (default: embedded defaults)")
	return cmd
}

// hubOptions turns the hub's configuration into hub.Options.
func hubOptions(cfg config.Config, log *slog.Logger) (hub.Options, error) {
	h := cfg.Hub
	opts := hub.Options{
		NATSURL:    h.NATSURL,
		StoreDir:   filepath.Join(cfg.StateDir, "hub"),
		Listen:     h.Listen,
		ServerName: h.ServerName,
		Cluster:    hub.Cluster{Name: h.Cluster.Name, Listen: h.Cluster.Listen, Routes: h.Cluster.Routes, Password: h.Cluster.Password},
		Replicas:   h.Replicas,
		Logger:     log,
		// The reports stream keeps what the controller's window needs.
		ReportWindow: h.AutoBlock.Window.Duration,
	}
	// Port 0 asks the system for a free port, as net.Listen does (NATS
	// would take it for its default port).
	if host, port, err := net.SplitHostPort(h.Listen); err == nil && port == "0" {
		opts.Listen = net.JoinHostPort(host, "-1")
	}
	for _, u := range h.Users {
		opts.Users = append(opts.Users, hub.User{Name: u.Name, Password: u.Password, Role: hub.Role(u.Role)})
	}
	if h.NATSURL != "" {
		// An external cluster: hub.credentials and hub.tls are this
		// hub's client side.
		if h.Credentials != "" {
			o, err := hub.Credentials(h.Credentials)
			if err != nil {
				return opts, fmt.Errorf("hub.credentials: %w", err)
			}
			opts.ConnOptions = append(opts.ConnOptions, o)
		}
		if h.TLS.Enabled() {
			c, err := hub.ClientTLS(h.TLS.CA, h.TLS.Cert, h.TLS.Key)
			if err != nil {
				return opts, fmt.Errorf("hub.tls: %w", err)
			}
			opts.ConnOptions = append(opts.ConnOptions, nats.Secure(c))
		}
		return opts, nil
	}
	if h.TLS.Enabled() {
		c, err := hub.ServerTLS(h.TLS.Cert, h.TLS.Key, h.TLS.CA)
		if err != nil {
			return opts, fmt.Errorf("hub.tls: %w", err)
		}
		opts.TLS = c
	}
	if h.ClusterTLS.Enabled() {
		c, err := hub.ServerTLS(h.ClusterTLS.Cert, h.ClusterTLS.Key, h.ClusterTLS.CA)
		if err != nil {
			return opts, fmt.Errorf("hub.cluster_tls: %w", err)
		}
		opts.ClusterTLS = c
	}
	return opts, nil
}

// runHub runs the hub until SIGTERM or SIGINT (or ctx ends).
func runHub(ctx context.Context, cfg config.Config, opts hub.Options, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	h, err := hub.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer h.Close()
	if h.Server != nil {
		log.Info("aegis hub running", "url", h.Server.ClientURL(), "store_dir", opts.StoreDir, "replicas", opts.Replicas)
	} else {
		log.Info("aegis hub running on an external JetStream cluster", "url", opts.NATSURL)
	}
	if err := startController(ctx, cfg.Hub, h, log); err != nil {
		return err
	}

	compact := time.NewTicker(compactEvery)
	defer compact.Stop()
	for {
		compactTombstones(ctx, h, tombstoneRetention(cfg.Hub), log)
		select {
		case <-ctx.Done():
			log.Info("aegis hub stopped")
			return nil
		case <-compact.C:
		}
	}
}

// startController runs the fleet controller with the hub's connection
// when hub.controller_key is set: it promotes a source that
// hub.auto_block.min_edges edges report within the window to a signed
// fleet block. Without the key nothing is promoted.
func startController(ctx context.Context, hc config.Hub, h *hub.Hub, log *slog.Logger) error {
	if hc.ControllerKey == "" {
		log.Info("fleet controller off: hub.controller_key is not set, automatic blocks are not promoted")
		return nil
	}
	key, err := keyfile.ReadPrivateKey(hc.ControllerKey)
	if err != nil {
		return fmt.Errorf("hub.controller_key: %w", err)
	}
	var operators []ed25519.PublicKey
	for i, path := range hc.OperatorKeys {
		k, err := keyfile.ReadPublicKey(path)
		if err != nil {
			return fmt.Errorf("hub.operator_keys[%d]: %w", i, err)
		}
		operators = append(operators, k)
	}
	if len(operators) == 0 {
		log.Warn("hub.operator_keys is empty: the controller weighs the records it finds unverified, so a record signed by any key stands as an operator's decision")
	}
	a := hc.AutoBlock
	ctl, err := controller.New(controller.Options{Conn: h.Conn, Key: key, Operators: operators, MinEdges: a.MinEdges,
		Window: a.Window.Duration, TTL: a.TTL.Duration, MaxTTL: a.MaxTTL.Duration, Logger: log.With("controller", true)})
	if err != nil {
		return err
	}
	go ctl.Run(ctx)
	log.Info("fleet controller running", "key_id", keyfile.KeyID(key.Public().(ed25519.PublicKey)),
		"operator_keys", len(operators), "min_edges", a.MinEdges, "window", a.Window.Duration, "ttl", a.TTL.Duration)
	return nil
}

// tombstoneRetention is how long signed deletions are kept: at least
// hub.tombstone_retention, and at least an automatic block's TTL, since
// the controller learns from an operator's deletion that a promotion of
// that source was lifted, and must not promote it again within a TTL.
func tombstoneRetention(h config.Hub) time.Duration {
	return max(h.TombstoneRetention.Duration, h.AutoBlock.TTL.Duration)
}

// compactTombstones removes the signed deletions older than retention.
func compactTombstones(ctx context.Context, h *hub.Hub, retention time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if lead, err := h.LeadsBucket(ctx); err != nil || !lead {
		if err != nil {
			log.Error("removing old tombstones: finding the bucket's leader", "err", err)
		}
		return // another hub compacts
	}
	n, err := hub.CompactTombstones(ctx, h.JS, time.Now().Add(-retention))
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("removing old tombstones", "err", err, "removed", n)
	case n > 0:
		log.Info("removed old tombstones", "removed", n, "older_than", retention.String())
	}
}
