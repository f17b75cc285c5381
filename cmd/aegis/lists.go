package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/lists"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/spf13/cobra"
)

// newListCmd builds `aegis block` or `aegis allow`: both lists take the same
// verbs.
func newListCmd(e *env, list string) *cobra.Command {
	noun := map[string]string{"block": "blocklist", "allow": "allowlist"}[list]
	cmd := groupCmd(list, "Manage the "+noun)

	var entry entryFlags
	var force bool
	addFlags := func(c *cobra.Command) {
		entry.register(c)
		if list == "block" {
			c.Flags().BoolVar(&force, "force", false, "block even if the range covers an allowlisted or management address")
		}
	}
	add := func(cmd *cobra.Command, targets []string) error {
		if err := lists.ValidateTTL(entry.ttl); err != nil {
			return err
		}
		if _, err := lists.ParseTargets(targets); err != nil {
			return err
		}
		req := admin.AddRequest{Targets: targets, Reason: entry.reason, Force: force}
		if entry.ttl > 0 {
			req.TTL = entry.ttl.String()
		}
		resp, err := e.client().Add(cmd.Context(), list, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %d to the %s\n", len(resp.Added), noun)
		return nil
	}

	addCmd := listAddCmd(noun, add)
	addFlags(addCmd)
	importCmd := listImportCmd(e, add)
	addFlags(importCmd)

	rmCmd := &cobra.Command{
		Use:     "rm TARGET...",
		Aliases: []string{"remove"},
		Short:   "Remove entries from the " + noun,
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, targets []string) error {
			if _, err := lists.ParseTargets(targets); err != nil {
				return err
			}
			removed, err := e.client().Remove(cmd.Context(), list, targets)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed %d from the %s\n", removed, noun)
			return nil
		},
	}

	var asJSON bool
	lsCmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the " + noun,
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := e.client().List(cmd.Context(), list)
			if err != nil {
				return err
			}
			if asJSON {
				return e.printJSON(resp)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tRULE\tHITS\tEXPIRES\tORIGIN\tREASON")
			for _, en := range resp.Entries {
				exp := "never"
				if !en.Expires.IsZero() {
					exp = en.Expires.Local().Format(time.RFC3339)
				}
				origin := store.OriginLocal
				if en.Origin != "" {
					origin = en.Origin
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", en.Prefix, en.RuleID, en.Hits, exp, origin, en.Reason)
			}
			for _, ab := range resp.AutoBlocks {
				fmt.Fprintf(tw, "%s\tauto\t-\t%s\tshield\tflooding\n", ab.Source, ab.Until.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	lsCmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	cmd.AddCommand(addCmd, rmCmd, lsCmd, importCmd)
	return cmd
}

// entryFlags are the flags of adding list entries, the same locally and
// to the fleet.
type entryFlags struct {
	ttl    time.Duration
	reason string
}

func (f *entryFlags) register(c *cobra.Command) {
	c.Flags().DurationVar(&f.ttl, "ttl", 0, "remove the entries after this long (e.g. 10m, 24h; default permanent)")
	c.Flags().StringVar(&f.reason, "reason", "", "why the entries are listed")
}

// listAddCmd is `add TARGET...` of a list, adding with add.
func listAddCmd(noun string, add func(*cobra.Command, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "add TARGET...",
		Short: "Add IPv4/IPv6 addresses or CIDR prefixes to the " + noun,
		Args:  args(cobra.MinimumNArgs(1)),
		RunE:  add,
	}
}

// listImportCmd is `import FILE` of a list: it reads the file's targets
// (readTargets) and adds them all with add.
func listImportCmd(e *env, add func(*cobra.Command, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Add every target in FILE (one per line, # comments; FireHOL netsets work), all or nothing",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			targets, err := readTargets(a[0])
			if err != nil {
				return err
			}
			if len(targets) == 0 {
				return fmt.Errorf("%s: no targets", a[0])
			}
			if len(targets) >= 10000 {
				fmt.Fprintf(e.stderr, "read %d targets from %s, importing…\n", len(targets), a[0])
			}
			return add(cmd, targets)
		},
	}
}

// readTargets reads an import file: one target per line, anything after #
// ignored, blank lines skipped. Errors name the line.
func readTargets(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if _, err := lists.ParseTarget(text); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}
