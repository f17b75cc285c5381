//go:build !linux

package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// linuxOnly stands in for a command whose work needs Linux (namespaces,
// seccomp, XDP), so that the command tree is the same everywhere.
func linuxOnly(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (Linux only)",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("aegis %s needs Linux", use)
		},
	}
}

func newLabCmd(*env) *cobra.Command {
	return linuxOnly("lab", "Demonstrate the node in a throwaway topology of network namespaces")
}

func newSandboxCmd(*env) *cobra.Command {
	return linuxOnly("sandbox", "Inspect and test the worker sandbox")
}

func newSandboxWorkerCmd() *cobra.Command {
	c := linuxOnly("sandbox-worker", "Serve as a sandbox worker")
	c.Hidden = true
	return c
}
