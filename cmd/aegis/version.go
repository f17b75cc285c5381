package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/spf13/cobra"
)

// versionInfo is what `aegis version` reports: the build's module version
// and VCS stamp, the Go toolchain, and the digest of the embedded XDP
// object (the same digest the loader verifies and the audit log records).
type versionInfo struct {
	Version      string `json:"version"`
	Revision     string `json:"revision,omitempty"`
	RevisionTime string `json:"revision_time,omitempty"`
	Modified     bool   `json:"modified,omitempty"`
	Go           string `json:"go"`
	Platform     string `json:"platform"`
	ShieldObject string `json:"shield_object_sha256"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, ShieldObject: shield.ObjectDigest()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print build information",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(v)
			}
			fmt.Fprintf(e.stdout, "aegis %s\n", v.Version)
			if v.Revision != "" {
				dirty := ""
				if v.Modified {
					dirty = " (modified)"
				}
				fmt.Fprintf(e.stdout, "revision  %s%s %s\n", v.Revision, dirty, v.RevisionTime)
			}
			fmt.Fprintf(e.stdout, "go        %s %s\nshield    sha256:%s\n", v.Go, v.Platform, v.ShieldObject)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
