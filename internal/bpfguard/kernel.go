package bpfguard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// MaxLogBytes caps the verifier log a KernelRejection carries (and so what
// an audit record holds): the tail is kept, since the reason is at the end.
const MaxLogBytes = 64 << 10

// quotedLines is how many lines of the log the error message quotes.
const quotedLines = 5

// KernelRejection is the kernel verifier's refusal of a program.
type KernelRejection struct {
	// Program is the name of the refused program, when known.
	Program string
	// Log is the verifier log, its oldest lines dropped to fit MaxLogBytes;
	// Truncated says whether any were.
	Log       []string
	Truncated bool
	// Err is the error the load returned.
	Err error
}

func (e *KernelRejection) Error() string {
	prog := e.Program
	if prog == "" {
		prog = "(unknown)"
	}
	tail := e.Log[max(len(e.Log)-quotedLines, 0):]
	return fmt.Sprintf("kernel verifier rejected program %s: %s", prog, strings.Join(tail, " | "))
}

func (e *KernelRejection) Unwrap() error { return e.Err }

// LoadCollection loads a verified object's collection into the kernel with
// the verifier log enabled; see withVerifierLog. A verifier refusal is
// returned as a *KernelRejection.
func LoadCollection(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions) (*ebpf.Collection, error) {
	coll, err := ebpf.NewCollectionWithOptions(spec, *withVerifierLog(opts))
	if err != nil {
		return nil, kernelError(err)
	}
	return coll, nil
}

// LoadAndAssign is spec.LoadAndAssign(to, opts) with the verifier log
// enabled, for bpf2go's generated object structs. A verifier refusal is
// returned as a *KernelRejection.
func LoadAndAssign(spec *ebpf.CollectionSpec, to any, opts *ebpf.CollectionOptions) error {
	if err := spec.LoadAndAssign(to, withVerifierLog(opts)); err != nil {
		return kernelError(err)
	}
	return nil
}

// withVerifierLog returns a copy of opts whose programs load with the
// verifier's statistics and error messages logged. A caller's own log level
// is kept. The instruction-by-instruction trace (LogLevelBranch) is not asked
// for up front: for a large program it runs to megabytes on every load.
func withVerifierLog(opts *ebpf.CollectionOptions) *ebpf.CollectionOptions {
	var o ebpf.CollectionOptions
	if opts != nil {
		o = *opts
	}
	o.Programs.LogDisabled = false
	if o.Programs.LogLevel == 0 {
		o.Programs.LogLevel = ebpf.LogLevelStats
	}
	return &o
}

// kernelError turns a verifier error into a *KernelRejection and passes any
// other error through.
func kernelError(err error) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return err
	}
	log, truncated := capLog(ve.Log, MaxLogBytes)
	return &KernelRejection{Program: programOf(err), Log: log, Truncated: truncated, Err: err}
}

// capLog keeps the last lines of log that fit in limit bytes (newlines
// counted).
func capLog(log []string, limit int) ([]string, bool) {
	size := 0
	for i := len(log) - 1; i >= 0; i-- {
		size += len(log[i]) + 1
		if size > limit {
			return append([]string(nil), log[i+1:]...), true
		}
	}
	return append([]string(nil), log...), false
}

// programOf extracts the program name from cilium/ebpf's collection error,
// which reads "program NAME: ...".
func programOf(err error) string {
	rest, ok := strings.CutPrefix(err.Error(), "program ")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, ": ")
	if !ok || strings.ContainsAny(name, " \t") {
		return ""
	}
	return name
}
