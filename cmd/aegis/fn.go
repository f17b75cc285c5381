package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/spf13/cobra"
)

func newFnCmd(e *env) *cobra.Command {
	cmd := groupCmd("fn", "Deploy and manage edge functions")
	cmd.AddCommand(newFnDeployCmd(e), newFnLsCmd(e), newFnRmCmd(e), newFnLogsCmd(e))
	return cmd
}

func newFnDeployCmd(e *env) *cobra.Command {
	return fnDeployCmd("Validate, instrument and compile a module, then switch its route to it",
		"Deploy a WASI (preview 1) module as function NAME. The module is validated, instrumented "+
			"with fuel and compiled before the route switches to the new version; requests in flight "+
			"finish on the old one. Flags not given take the node's defaults (functions.defaults).",
		func(cmd *cobra.Command, name string, spec functions.Spec, module []byte) error {
			info, err := e.client().Deploy(cmd.Context(), name, admin.DeployRequest{Module: module, Spec: spec})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deployed %s version %d on %s (sha256 %.12s, %d bytes)\n", info.Name, info.Version, info.Route, info.Digest, info.Size)
			return nil
		})
}

// fnDeployCmd is `fn deploy NAME FILE.wasm --route ...`, locally and to
// the fleet: deploy is given the checked name and spec and the module.
func fnDeployCmd(short, long string, deploy func(cmd *cobra.Command, name string, spec functions.Spec, module []byte) error) *cobra.Command {
	var flags specFlags
	cmd := &cobra.Command{
		Use:   "deploy NAME FILE.wasm --route [HOST]/PATH [--fuel N] [--timeout DUR] [--memory SIZE] [--allow-host HOST]...",
		Short: short,
		Long:  long,
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			name, file := a[0], a[1]
			spec, err := flags.spec(cmd, name)
			if err != nil {
				return err
			}
			module, err := readModule(file)
			if err != nil {
				return err
			}
			return deploy(cmd, name, spec, module)
		},
	}
	flags.register(cmd)
	return cmd
}

// readModule reads a module file, refusing one larger than any node takes
// before reading it, and bytes that are no WebAssembly module.
func readModule(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > int64(config.MaxModuleSizeCeiling) {
		return nil, fmt.Errorf("%s: the module is %d bytes, over the %s any node takes", file, st.Size(), config.MaxModuleSizeCeiling)
	}
	module, err := io.ReadAll(io.LimitReader(f, int64(config.MaxModuleSizeCeiling)+1))
	if err != nil {
		return nil, err
	}
	if err := functions.CheckModule(module); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return module, nil
}

// specFlags are the flags of deploying a function, locally and to the
// fleet: a functions.Spec.
type specFlags struct {
	route, memory string
	fuel          int64
	timeout       time.Duration
	allowHosts    []string
}

func (f *specFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.route, "route", "", "where the function answers: [HOST]/PATH")
	cmd.Flags().Int64Var(&f.fuel, "fuel", 0, "instruction budget per request")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "wall-clock deadline per request (e.g. 500ms)")
	cmd.Flags().StringVar(&f.memory, "memory", "", "largest linear memory (e.g. 16MiB)")
	cmd.Flags().StringArrayVar(&f.allowHosts, "allow-host", nil, "host[:port] the function may fetch from (repeatable)")
}

// spec checks the function's name and the flags and returns the Spec
// they give; flags not given stay unset (the node's defaults). Its errors
// are usage errors.
func (f *specFlags) spec(cmd *cobra.Command, name string) (functions.Spec, error) {
	if err := store.ValidFunctionName(name); err != nil {
		return functions.Spec{}, usageError{err}
	}
	if f.route == "" {
		return functions.Spec{}, usageError{fmt.Errorf("--route is required, e.g. --route /hello or --route example.com/hello")}
	}
	if _, err := functions.ParseRoute(f.route); err != nil {
		return functions.Spec{}, usageError{err}
	}
	spec := functions.Spec{Route: f.route, AllowHosts: f.allowHosts}
	if cmd.Flags().Changed("fuel") {
		if f.fuel < 1 {
			return functions.Spec{}, usageError{fmt.Errorf("--fuel must be positive")}
		}
		fuel := f.fuel
		spec.Fuel = &fuel
	}
	if cmd.Flags().Changed("timeout") {
		if f.timeout <= 0 {
			return functions.Spec{}, usageError{fmt.Errorf("--timeout must be positive")}
		}
		spec.Timeout = &config.Duration{Duration: f.timeout}
	}
	if f.memory != "" {
		sz, err := config.ParseSize(f.memory)
		if err != nil {
			return functions.Spec{}, usageError{fmt.Errorf("--memory: %w", err)}
		}
		spec.Memory = &sz
	}
	if err := spec.Check(); err != nil {
		return functions.Spec{}, usageError{err}
	}
	return spec, nil
}

func newFnLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List deployed functions",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fns, err := e.client().Functions(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return e.printJSON(fns)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tROUTE\tSHA256\tSIZE\tFUEL\tTIMEOUT\tMEMORY\tREQUESTS\tDEPLOYED")
			for _, f := range fns {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.12s\t%d\t%d\t%s\t%s\t%d\t%s\n", f.Name, f.Version, f.Route, f.Digest, f.Size,
					f.Fuel, f.Timeout, f.Memory, f.Requests, f.Deployed.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newFnRmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a function, its module and its key-value data",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			info, err := e.client().RemoveFunction(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed %s (version %d)\n", info.Name, info.Version)
			return nil
		},
	}
}

func newFnLogsCmd(e *env) *cobra.Command {
	var (
		follow bool
		lines  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [-n N] [--json]",
		Short: "Show a function's log: its stderr, host log calls, errors and access log",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if lines < 0 {
				return usageError{fmt.Errorf("-n must not be negative")}
			}
			return e.client().FunctionLogs(cmd.Context(), a[0], lines, follow, func(line []byte) error {
				if asJSON {
					_, err := fmt.Fprintf(e.stdout, "%s\n", line)
					return err
				}
				var l functions.LogLine
				if err := json.Unmarshal(line, &l); err != nil {
					return fmt.Errorf("decoding log line: %w", err)
				}
				_, err := fmt.Fprintln(e.stdout, formatLogLine(l))
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "how many recent lines to print first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	return cmd
}

func formatLogLine(l functions.LogLine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s v%d %s", l.Time.Local().Format("2006-01-02T15:04:05.000"), l.Function, l.Version, l.Stream)
	if l.Level != "" && l.Level != "info" {
		fmt.Fprintf(&b, " %s", l.Level)
	}
	fmt.Fprintf(&b, ": %s", l.Message)
	keys := make([]string, 0, len(l.Attrs))
	for k := range l.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, l.Attrs[k])
	}
	return b.String()
}
