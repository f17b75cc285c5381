package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/spf13/cobra"
)

// followInterval is how often `audit tail -f` looks for new records.
const followInterval = 200 * time.Millisecond

func newAuditCmd(e *env) *cobra.Command {
	cmd := groupCmd("audit", "Check and read the node's tamper-evident audit log")
	var cfgPath, dir, anchor string
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "node config file naming the log's place (default: embedded defaults)")
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "audit log directory (default: audit.dir, else <state_dir>/audit)")
	logDir := func() (string, error) {
		if dir != "" {
			return dir, nil
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return "", err
		}
		return cfg.AuditDir(), nil
	}
	// anchorPath is the anchor verify holds the log to: --anchor, else
	// the node's (<state_dir>/audit.anchor) unless --dir names another log.
	anchorPath := func() (string, error) {
		if anchor != "" || dir != "" {
			return anchor, nil
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return "", err
		}
		return cfg.AuditAnchor(), nil
	}

	verify := &cobra.Command{
		Use:   "verify [FILE...]",
		Short: "Check the hash chain; report the first edited, removed, reordered or truncated record",
		Long: "Check every record's hash, the chain between records and files, and the head that records " +
			"the last acknowledged record. With no FILE, the node's own log is checked, and held to the " +
			"anchor the node keeps outside the log directory (<state_dir>/audit.anchor, or --anchor), " +
			"which catches a log directory emptied, cut short with its head rewritten, or replaced. " +
			"It may run while the node writes. Exit status 1 names the first record that is not as written.",
		Args: args(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, files []string) error {
			var (
				res audit.Result
				err error
			)
			var a string
			if len(files) > 0 {
				if cmd.Flags().Changed("dir") || cmd.Flags().Changed("config") || cmd.Flags().Changed("anchor") {
					return usageError{fmt.Errorf("give either FILE arguments or --dir/--config/--anchor, not both")}
				}
				res, err = audit.Verify(files...)
			} else {
				d, derr := logDir()
				if derr != nil {
					return derr
				}
				if a, err = anchorPath(); err != nil {
					return err
				}
				res, err = audit.VerifyDirAnchored(d, a)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, verifySummary(res, a))
			return nil
		},
	}

	var (
		follow, asJSON bool
		op             string
		n              int
	)
	tail := &cobra.Command{
		Use:   "tail [-f] [--op OP] [-n N] [--json]",
		Short: "Print the last records, and with -f the new ones as they are written",
		Long: "Print the last N records (oldest first), only those whose operation matches OP when given " +
			"(a name such as ebpf.attach or a pattern such as 'ebpf.*'). tail does not verify; use verify.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 {
				return usageError{fmt.Errorf("-n must not be negative, got %d", n)}
			}
			if _, err := path.Match(op, ""); err != nil {
				return usageError{fmt.Errorf("--op %q: %w", op, err)}
			}
			match := func(r audit.Record) bool {
				ok, _ := path.Match(op, r.Op)
				return op == "" || ok
			}
			d, err := logDir()
			if err != nil {
				return err
			}
			recs, last, err := audit.Tail(d, n, match)
			if err != nil {
				return err
			}
			print := func(r audit.Record) {
				if asJSON {
					fmt.Fprintf(e.stdout, "%s\n", r.Line())
				} else {
					fmt.Fprintln(e.stdout, r)
				}
			}
			for _, r := range recs {
				print(r)
			}
			if !follow {
				return nil
			}
			return followLog(cmd.Context(), d, last, func(r audit.Record) {
				if match(r) {
					print(r)
				}
			})
		},
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing records as they are written, across files")
	tail.Flags().StringVar(&op, "op", "", "only records of this operation (a name or a pattern such as 'ebpf.*')")
	tail.Flags().IntVarP(&n, "lines", "n", 10, "number of records to print")
	tail.Flags().BoolVar(&asJSON, "json", false, "print the records' JSON lines exactly as written")

	verify.Flags().StringVar(&anchor, "anchor", "", "anchor file the log must reach (default: <state_dir>/audit.anchor, none with --dir)")
	cmd.AddCommand(verify, tail)
	return cmd
}

// followLog polls the log for records after seq after until interrupted.
func followLog(ctx context.Context, dir string, after uint64, each func(audit.Record)) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fl, err := audit.NewFollower(dir, after)
	if err != nil {
		return err
	}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		recs, err := fl.Next()
		if err != nil {
			return err
		}
		for _, r := range recs {
			each(r)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// verifySummary is the one line `audit verify` prints for a good log;
// anchor is the anchor file it was to be held to ("" for none).
func verifySummary(res audit.Result, anchor string) string {
	var b strings.Builder
	switch res.Records {
	case 0:
		fmt.Fprintf(&b, "ok: no records")
	default:
		fmt.Fprintf(&b, "ok: %d records, seq %d..%d, %d %s", res.Records, res.FirstSeq, res.LastSeq, res.Files, plural(res.Files, "file", "files"))
	}
	if res.Unacknowledged > 0 {
		fmt.Fprintf(&b, "; %d after the head (seq %d..%d: being written, or never acknowledged before a crash)",
			res.Unacknowledged, res.HeadSeq+1, res.LastSeq)
	}
	if res.TornBytes > 0 {
		fmt.Fprintf(&b, "; torn final line of %d bytes ignored (a write cut short by a crash)", res.TornBytes)
	}
	if !res.Anchored && res.Records > 0 {
		fmt.Fprintf(&b, "; no head checked, so removal of the last records cannot be detected")
	}
	switch {
	case res.AnchorFile != "":
		fmt.Fprintf(&b, "; reaches the anchor's record %d (%s)", res.AnchorSeq, res.AnchorFile)
	case anchor != "":
		fmt.Fprintf(&b, "; no anchor at %s, so a log emptied or replaced cannot be detected", anchor)
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
