package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/lab"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newLabCmd(e *env) *cobra.Command {
	var (
		duration    time.Duration
		keep, plain bool
		fleet       bool
		clean, fn   string
	)
	cmd := &cobra.Command{
		Use:   "lab [--fleet] [--duration 20s] [--keep] [--plain] [--function FILE.wasm] | --clean ID|all",
		Short: "Demonstrate the node in a throwaway topology of network namespaces (root)",
		Long: "Build three network namespaces (attacker, client, edge) joined by veth pairs, run `aegis node` " +
			"on the edge, block one of the attacker's addresses and deploy an edge function, then flood the " +
			"edge from the attacker (SYN flood from forged sources, UDP flood, blocklisted source) while the " +
			"client calls the function. A live view shows drops per reason and the function's requests/s and " +
			"p99; a summary follows. Ctrl-C or any failure removes everything the lab made. Exits 1 if the " +
			"shield dropped nothing or the function never answered.\n\n" +
			"With --fleet: a hub (embedded JetStream, in the client namespace) and two edges that follow it; " +
			"the lab publishes one signed block of the attacker's known-bad address on the hub, prints how " +
			"long each edge took to list it, floods both edges and shows their drops. Exits 1 unless both " +
			"edges listed the block and dropped that source (and the function on edge-1 answered).",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clean != "" && clean != "all" && !lab.ValidID(clean) {
				return usageError{fmt.Errorf("--clean: %q is not a lab ID (hex digits) or all", clean)}
			}
			if duration <= 0 {
				return usageError{fmt.Errorf("--duration must be positive")}
			}
			if os.Geteuid() != 0 {
				return errors.New("aegis lab needs root: it creates network namespaces and loads XDP programs")
			}
			if clean != "" {
				return cleanLabs(e, clean)
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the aegis binary: %w", err)
			}
			var module []byte
			if fn != "" {
				if module, err = os.ReadFile(fn); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			// Asking for SIGPIPE turns a closed stdout (`aegis lab | head`)
			// into failed writes instead of death before the teardown.
			sigpipe := make(chan os.Signal, 1)
			signal.Notify(sigpipe, syscall.SIGPIPE)
			defer signal.Stop(sigpipe)
			sum, err := lab.Run(ctx, lab.Options{
				Executable: exe,
				Env:        os.Environ(),
				Duration:   duration,
				Rates:      lab.DefaultRates(),
				Module:     module,
				Keep:       keep,
				Live:       !plain && isTerminal(e.stdout),
				Out:        e.stdout,
				Fleet:      fleet,
			})
			if err != nil {
				return err
			}
			return sum.Check()
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 20*time.Second, "how long the traffic runs")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the topology and the node running afterwards")
	cmd.Flags().BoolVar(&plain, "plain", false, "one line per second instead of a refreshing table")
	cmd.Flags().StringVar(&fn, "function", "", "deploy this module instead of the built-in one")
	cmd.Flags().BoolVar(&fleet, "fleet", false, "a hub and two edges following it; the block is published on the hub")
	cmd.Flags().StringVar(&clean, "clean", "", "remove what the lab ID left behind (or every lab's, with all)")
	return cmd
}

// cleanLabs removes one kept or abandoned lab, or all of them.
func cleanLabs(e *env, which string) error {
	ids := []string{which}
	if which == "all" {
		var err error
		if ids, err = lab.Leftovers(); err != nil {
			return err
		}
	}
	var errs []error
	for _, id := range ids {
		if err := lab.Clean(id); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", id, err))
			continue
		}
		fmt.Fprintf(e.stdout, "removed lab %s\n", id)
	}
	return errors.Join(errs...)
}

// isTerminal reports whether w is a terminal, where the view can redraw.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
