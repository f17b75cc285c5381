package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newFleetStatusCmd is `aegis fleet status`: the local node's view of the
// fleet it follows, over the admin socket.
func newFleetStatusCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show this node's view of the fleet it follows",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := e.client().FleetStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return e.printJSON(st)
			}
			if !st.Enabled {
				fmt.Fprintln(e.stdout, "this node follows no fleet (fleet.servers is empty)")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			last := "never"
			if !st.LastApplied.IsZero() {
				last = st.LastApplied.Local().Format(time.RFC3339)
			}
			refused := "none"
			if len(st.Refused) > 0 {
				var parts []string
				for _, r := range slices.Sorted(maps.Keys(st.Refused)) {
					parts = append(parts, fmt.Sprintf("%s=%d", r, st.Refused[r]))
				}
				refused = strings.Join(parts, " ")
			}
			for _, row := range [][2]string{
				{"edge", st.Edge},
				{"servers", strings.Join(st.Servers, ", ")},
				{"connected", fmt.Sprint(st.Connected)},
				{"caught up", fmt.Sprint(st.CaughtUp)},
				{"cursor", fmt.Sprintf("%s @ %d", st.Cursor.Epoch, st.Cursor.Seq)},
				{"applied", fmt.Sprint(st.Applied)},
				{"last applied", last},
				{"ignored", fmt.Sprint(st.Ignored)},
				{"refused", refused},
				{"full reconciles", fmt.Sprint(st.FullReconciles)},
				{"fleet entries", fmt.Sprintf("block %d, allow %d", st.Entries["block"], st.Entries["allow"])},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			if st.LastError != "" {
				fmt.Fprintf(tw, "last error\t%s\n", st.LastError)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
