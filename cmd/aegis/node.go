package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/batchlog"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/spf13/cobra"
)

// logBatchDelay is how long a line of the node's log may wait for others.
const logBatchDelay = 20 * time.Millisecond

func newNodeCmd(e *env) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "node [--config FILE]",
		Short: "Run the aegis daemon",
		Long: "Run the daemon: load the shield (adopting pinned state), attach to the configured " +
			"interfaces and serve the admin API. Stopping it leaves the shield attached and enforcing.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			// Every gateway request logs a line: they are written in
			// batches, at most logBatchDelay late (internal/batchlog).
			out := batchlog.New(e.stderr, logBatchDelay)
			defer out.Close()
			log := slog.New(slog.NewJSONHandler(out, nil))
			return runNode(cmd.Context(), cfg, log, func() (config.Config, error) { return config.Load(cfgPath) })
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (default: embedded defaults)")
	return cmd
}

// runNode runs the daemon until SIGTERM or SIGINT; on SIGHUP it re-reads
// the configuration with reload (nil: SIGHUP is ignored) and applies it, or
// logs why it refused.
func runNode(ctx context.Context, cfg config.Config, log *slog.Logger, reload func() (config.Config, error)) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	l, err := admin.Listen(cfg.Admin.Socket)
	if err != nil {
		return err
	}
	srv := admin.NewServer(n, log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if reload == nil {
				log.Warn("SIGHUP ignored: the node was started without a configuration file")
				continue
			}
			next, err := reload()
			if err == nil {
				err = n.Reload(next)
			}
			if err != nil {
				log.Error("configuration reload refused; the running configuration stays", "err", err)
				continue
			}
			log.Info("configuration reloaded")
		}
	}()
	log.Info("aegis node running", "socket", cfg.Admin.Socket, "state_dir", cfg.StateDir, "interfaces", cfg.Shield.Interfaces)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdownCtx), <-runErr)
	os.Remove(cfg.Admin.Socket)
	if cfg.Shield.DetachOnExit {
		err = errors.Join(err, n.DetachAll(node.Actor{}))
		log.Info("aegis node stopped; the shield was detached (shield.detach_on_exit)")
		return err
	}
	log.Info("aegis node stopped; the shield stays attached")
	return err
}
