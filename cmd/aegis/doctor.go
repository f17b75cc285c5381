package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"

	"github.com/aegis-edge/aegis/internal/kernelprobe"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/spf13/cobra"
)

// newDoctorCmd is `aegis doctor`: it probes the running kernel and prints
// what aegis finds and what it does about each gap. It exits 1 when a
// feature without a fallback is missing (or could not be probed, as when
// run without privilege), 0 otherwise.
func newDoctorCmd(e *env) *cobra.Command {
	var asJSON bool
	var without []string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what the kernel offers aegis and how aegis copes with each gap",
		Long: "doctor probes the running kernel (run it as root, like the node) and prints one row per\n" +
			"feature: found or not, the kernel that brought it, and aegis's fallback when it is missing.\n" +
			"It exits 1 when a feature aegis cannot work without is missing.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := kernelprobe.Probe(kernelprobe.Options{Without: without})
			if errors.Is(err, kernelprobe.ErrUnknownFeature) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			mc := probeMemoryCap()
			if asJSON {
				if err := e.printJSON(doctorReport{Report: r, MemoryCap: mc}); err != nil {
					return err
				}
			} else {
				printFeatures(e, r, mc)
			}
			var names []string
			for _, f := range r.MissingRequired() {
				names = append(names, f.Name)
			}
			if !mc.Available {
				names = append(names, memoryCapRow)
			}
			if len(names) > 0 {
				return fmt.Errorf("the host lacks what aegis needs: %s", strings.Join(names, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringSliceVar(&without, "without", nil,
		"report these features as missing (to see the fallbacks an older kernel would get): "+strings.Join(kernelprobe.Names(), ","))
	return cmd
}

// memoryCapRow names doctor's row for the workers' memory cgroup, which
// the node needs unless functions.allow_no_memory_cap says otherwise.
const memoryCapRow = "worker-memory-cap"

const memoryCapFallback = "the node refuses to start its function workers unless " +
	"functions.allow_no_memory_cap is true (they then run without a memory limit)"

// memoryCap is what doctor found of the workers' memory cap.
type memoryCap struct {
	Available bool `json:"available"`
	// Unknown: the probe could not run (it needs root, like the node).
	Unknown bool   `json:"unknown,omitempty"`
	Detail  string `json:"detail"`
}

// doctorReport is doctor's JSON: the kernel's features and the memory cap.
type doctorReport struct {
	kernelprobe.Report
	MemoryCap memoryCap `json:"memory_cap"`
}

// probeWorkerCgroup is sandbox.ProbeMemoryCap; tests replace it.
var probeWorkerCgroup = sandbox.ProbeMemoryCap

// probeMemoryCap makes and removes a cgroup as a worker's would be.
func probeMemoryCap() memoryCap {
	desc, err := probeWorkerCgroup()
	switch {
	case err == nil:
		return memoryCap{Available: true, Detail: desc}
	case errors.Is(err, fs.ErrPermission):
		return memoryCap{Unknown: true, Detail: err.Error()}
	}
	return memoryCap{Detail: err.Error()}
}

func printFeatures(e *env, r kernelprobe.Report, mc memoryCap) {
	fmt.Fprintf(e.stdout, "kernel %s (aegis supports %s and later)\n", r.Kernel, kernelprobe.MinimumKernel)
	if r.BelowMinimum() {
		fmt.Fprintf(e.stdout, "warning: this kernel is older than %s; aegis is not tested on it\n", kernelprobe.MinimumKernel)
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tSTATUS\tSINCE\tDETAIL")
	var gaps []kernelprobe.Feature
	for _, f := range r.Features {
		detail := f.Detail
		if f.Unknown() {
			detail = "probe failed: " + f.ProbeError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, featureStatus(f), f.MinKernel, detail)
		if !f.Available {
			gaps = append(gaps, f)
		}
	}
	row := kernelprobe.Feature{Name: memoryCapRow, Available: mc.Available, Detail: mc.Detail, Fallback: memoryCapFallback}
	detail := mc.Detail
	if mc.Unknown {
		row.ProbeError, detail = mc.Detail, "probe failed: "+mc.Detail
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Name, featureStatus(row), "-", detail)
	if !row.Available {
		gaps = append(gaps, row)
	}
	tw.Flush()
	if len(gaps) == 0 {
		fmt.Fprintln(e.stdout, "\nevery feature is present.")
		return
	}
	fmt.Fprintln(e.stdout, "\nwhat aegis does about the gaps:")
	unknown := false
	for _, f := range gaps {
		name := f.Name
		if f.Required {
			name += " (required, no fallback)"
		}
		fmt.Fprintf(e.stdout, "  %s: %s\n", name, f.Fallback)
		unknown = unknown || f.Unknown()
	}
	if unknown {
		fmt.Fprintln(e.stdout, "\nsome probes failed: run aegis doctor as root, like the node.")
	}
}

func featureStatus(f kernelprobe.Feature) string {
	switch {
	case f.Available:
		return "yes"
	case f.Unknown():
		return "unknown"
	default:
		return "no"
	}
}
