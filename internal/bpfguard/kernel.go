package bpfguard

import (
	"errors"
	"fmt"
	"slices"
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
	// Quote the last lines before the statistics: they hold the reason.
	var tail []string
	for i := len(e.Log) - 1; i >= 0 && len(tail) < quotedLines; i-- {
		if !isStatsLine(e.Log[i]) {
			tail = append(tail, e.Log[i])
		}
	}
	slices.Reverse(tail)
	return fmt.Sprintf("kernel verifier rejected program %s: %s", prog, strings.Join(tail, " | "))
}

// isStatsLine reports whether a log line is one of the statistics the
// verifier appends at LogLevelStats.
func isStatsLine(l string) bool {
	for _, p := range []string{"verification time ", "stack depth ", "processed "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func (e *KernelRejection) Unwrap() error { return e.Err }

// LoadCollection loads a verified object's collection into the kernel with
// the verifier log enabled (see load). A verifier refusal is returned as a
// *KernelRejection.
func LoadCollection(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions) (*ebpf.Collection, error) {
	var coll *ebpf.Collection
	err := load(opts, func(o *ebpf.CollectionOptions) error {
		var err error
		coll, err = ebpf.NewCollectionWithOptions(spec, *o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return coll, nil
}

// LoadAndAssign is spec.LoadAndAssign(to, opts) with the verifier log
// enabled (see load), for bpf2go's generated object structs. A verifier
// refusal is returned as a *KernelRejection.
func LoadAndAssign(spec *ebpf.CollectionSpec, to any, opts *ebpf.CollectionOptions) error {
	return load(opts, func(o *ebpf.CollectionOptions) error { return spec.LoadAndAssign(to, o) })
}

// load runs do with the verifier's statistics and error messages logged,
// so an accepted program's VerifierLog says what verification cost. The
// instruction-by-instruction trace (LogLevelBranch) makes loading the shield
// four times slower, so it is asked for only after a refusal: the load is
// retried once with it, and that attempt's log is the one reported. A log
// level set by the caller is kept as it is, without the retry.
func load(opts *ebpf.CollectionOptions, do func(*ebpf.CollectionOptions) error) error {
	var o ebpf.CollectionOptions
	if opts != nil {
		o = *opts
	}
	o.Programs.LogDisabled = false
	callerLevel := o.Programs.LogLevel
	if callerLevel == 0 {
		o.Programs.LogLevel = ebpf.LogLevelStats
	}
	err := do(&o)
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && callerLevel == 0 {
		o.Programs.LogLevel = ebpf.LogLevelBranch | ebpf.LogLevelStats
		err = do(&o)
	}
	if err != nil {
		return kernelError(err)
	}
	return nil
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
