package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/node"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/spf13/cobra"
)

func newShieldCmd(e *env) *cobra.Command {
	cmd := groupCmd("shield", "Inspect and steer the XDP shield")

	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show interfaces, XDP mode, program, map fill and counters",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := e.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return e.printJSON(st)
			}
			printStatus(e, st)
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	mode := &cobra.Command{
		Use:       "mode enforce|monitor",
		Short:     "Switch between dropping (enforce) and only counting (monitor)",
		Args:      args(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		ValidArgs: []string{"enforce", "monitor"},
		RunE: func(cmd *cobra.Command, a []string) error {
			st, err := e.client().SetMode(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "shield mode: %s\n", st.Mode)
			return nil
		},
	}

	rate := rateCmd("Change a class's per-source rate limit at runtime (--pps 0 lifts it)",
		func(cmd *cobra.Command, req admin.RateRequest) error {
			st, err := e.client().SetRate(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rate limits: syn %d/s burst %d, udp %d/s burst %d, icmp %d/s burst %d\n",
				st.SYN.PPS, st.SYN.Burst, st.UDP.PPS, st.UDP.Burst, st.ICMP.PPS, st.ICMP.Burst)
			return nil
		})

	detach := &cobra.Command{
		Use:   "detach IFACE",
		Short: "Remove the shield from an interface",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := e.client().Detach(cmd.Context(), a[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "detached from %s\n", a[0])
			return nil
		},
	}
	cmd.AddCommand(status, mode, rate, detach)
	return cmd
}

// clockLine tells how the data path reads the time.
func clockLine(c shield.ClockInfo) string {
	if c.Source == shield.ClockJiffies {
		return fmt.Sprintf("jiffies (HZ %d, within %s of boot time)", c.HZ, c.Resolution)
	}
	if c.Fallback != "" {
		return fmt.Sprintf("%s helper on every packet (%s)", c.Source, c.Fallback)
	}
	return c.Source + " helper on every packet"
}

func printStatus(e *env, st node.Status) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "mode:\t%s\n", st.Settings.Mode)
	fmt.Fprintf(tw, "rate limits:\tsyn %d/s (burst %d), udp %d/s (burst %d), icmp %d/s (burst %d) per /%d IPv4, /%d IPv6 source\n",
		st.Settings.SYN.PPS, st.Settings.SYN.Burst, st.Settings.UDP.PPS, st.Settings.UDP.Burst,
		st.Settings.ICMP.PPS, st.Settings.ICMP.Burst, st.Settings.IPv4PrefixLen, st.Settings.IPv6PrefixLen)
	fmt.Fprintf(tw, "auto-block:\tover %d× the rate for %s; %d sources blocked now\n", st.Settings.AutoBlockFactor, st.Settings.AutoBlockTTL, st.AutoBlocks)
	fmt.Fprintf(tw, "long header chains:\t%s (IPv6 chains of more than 6 extension headers)\n", st.Settings.LongChains)
	fmt.Fprintf(tw, "clock:\t%s\n", clockLine(st.Clock))
	if len(st.Dirty) > 0 {
		fmt.Fprintf(tw, "kernel out of date:\t%s (a sync failed; the next sweep repairs it from the store)\n", strings.Join(st.Dirty, ", "))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "INTERFACE\tIFINDEX\tXDP MODE\tPROGRAM\tLINK")
	if len(st.Interfaces) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, i := range st.Interfaces {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", i.Interface, i.Ifindex, i.Mode, i.ProgramID, i.LinkID)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "MAP\tFAMILY\tENTRIES\tLIMIT")
	for _, m := range st.Maps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", m.List, m.Family, m.Entries, m.Limit)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "REASON\tVERDICT\tPACKETS\tBYTES\tMONITORED PACKETS")
	for _, r := range shield.Reasons() {
		c := st.Counters[r.String()]
		verdict := "pass"
		if r.Drops() {
			verdict = "drop"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", r, verdict, c.Packets, c.Bytes, c.MonitoredPackets)
	}
	tw.Flush()
	for _, ev := range st.Recent {
		fmt.Fprintf(e.stdout, "auto-blocked %s (%s flood, %d packets in 1s) until %s\n", ev.Source, ev.Class, ev.WindowPkts, ev.Until.Format("15:04:05"))
	}
}

// rateCmd is `rate syn|udp|icmp --pps N [--burst N]`, locally and to the
// fleet: set is given the class and its setting.
func rateCmd(short string, set func(*cobra.Command, admin.RateRequest) error) *cobra.Command {
	var pps, burst uint32
	rate := &cobra.Command{
		Use:       "rate syn|udp|icmp --pps N [--burst N]",
		Short:     short,
		Args:      args(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		ValidArgs: []string{"syn", "udp", "icmp"},
		RunE: func(cmd *cobra.Command, a []string) error {
			if !cmd.Flags().Changed("pps") {
				return usageError{fmt.Errorf("--pps is required")}
			}
			if !cmd.Flags().Changed("burst") {
				burst = shield.DefaultBurst(pps)
			}
			// Checked here too: a fleet rate is published, not sent to a
			// node that would refuse it, and every edge would.
			if err := (shield.Bucket{PPS: pps, Burst: burst}).Validate(); err != nil {
				return usageError{fmt.Errorf("%s: %w", a[0], err)}
			}
			return set(cmd, admin.RateRequest{Class: a[0], PPS: pps, Burst: burst})
		},
	}
	rate.Flags().Uint32Var(&pps, "pps", 0, "packets per second per source")
	rate.Flags().Uint32Var(&burst, "burst", 0, "bucket size (default 2×pps)")
	return rate
}
