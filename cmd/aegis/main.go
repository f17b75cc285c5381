// Command aegis is the aegis edge node: `aegis node` runs the daemon, the
// other commands manage a running node through its admin socket.
//
// Exit status: 0 success, 1 refused or failed (the reason on stderr),
// 2 usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// env is what a command may touch of its surroundings, injected so commands
// are testable.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	socket         string
}

func (e *env) client() *admin.Client { return admin.NewClient(e.socket) }

// printJSON writes v as indented JSON: every command's --json output.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// usageError marks a mistake in how the command was called: exit status 2.
type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(stderr, "aegis: %v\nRun 'aegis --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "aegis: %v\n", err)
	return 1
}

func newRoot(e *env) *cobra.Command {
	root := groupCmd("aegis", "aegis hardened edge node")
	root.SilenceUsage, root.SilenceErrors = true, true
	root.PersistentPreRun = func(cmd *cobra.Command, args []string) {
		if e.socket == "" {
			e.socket = e.getenv("AEGIS_SOCKET")
		}
		if e.socket == "" {
			e.socket = admin.DefaultSocket
		}
	}
	root.PersistentFlags().StringVar(&e.socket, "socket", "", "admin socket of the node (env AEGIS_SOCKET, default "+admin.DefaultSocket+")")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newNodeCmd(e), newListCmd(e, "block"), newListCmd(e, "allow"), newShieldCmd(e), newSandboxCmd(e), newSandboxWorkerCmd(), newEBPFCmd(e), newDoctorCmd(e), newAuditCmd(e), newFnCmd(e), newStatsCmd(e), newVersionCmd(e), newLabCmd(e))
	root.AddCommand(newFleetCmd(e), newHubCmd(e))
	return root
}

// args wraps a cobra argument validator so its complaint exits with status 2.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// groupCmd is a command that only holds subcommands: run bare or with an
// unknown subcommand, it is a usage error.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, a []string) error {
			if len(a) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", a[0], cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("%s needs a subcommand", cmd.CommandPath())}
		},
	}
}
