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
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/spf13/cobra"
)

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
			log := slog.New(slog.NewJSONHandler(e.stderr, nil))
			return runNode(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (default: embedded defaults)")
	return cmd
}

func runNode(ctx context.Context, cfg config.Config, log *slog.Logger) error {
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
	log.Info("aegis node stopped; the shield stays attached")
	return err
}
