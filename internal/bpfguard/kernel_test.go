package bpfguard

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
)

func corpusSpec(t *testing.T, name string) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(readCorpus(t, name)))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestKernelRejectsOutOfBoundsRead loads an object every static check
// accepts but the kernel verifier refuses, and expects the refusal, with
// the verifier's reason, in the error.
func TestKernelRejectsOutOfBoundsRead(t *testing.T) {
	testutil.RequireRoot(t)
	pub, priv := testKey(t)
	obj := readCorpus(t, "oob_read.o")
	if r := Verify(obj, corpusPolicy().WithPublicKeys(pub), Sign(obj, priv)); !r.Passed() {
		t.Fatalf("static checks refused the object: %v", r.Err())
	}
	coll, err := LoadCollection(corpusSpec(t, "oob_read.o"), nil)
	if err == nil {
		coll.Close()
		t.Fatal("the kernel accepted an unchecked packet read")
	}
	var kr *KernelRejection
	if !errors.As(err, &kr) {
		t.Fatalf("error %v (%T) is not a KernelRejection", err, err)
	}
	if kr.Program != "oob" {
		t.Errorf("program %q, want oob", kr.Program)
	}
	const reason = "invalid access to packet"
	if !strings.Contains(strings.Join(kr.Log, "\n"), reason) {
		t.Errorf("log does not give the reason %q:\n%s", reason, strings.Join(kr.Log, "\n"))
	}
	// The retry with LogLevelBranch brings the instruction trace.
	if !slices.ContainsFunc(kr.Log, func(l string) bool { return strings.HasPrefix(l, "0: (61)") }) {
		t.Errorf("log has no register trace:\n%s", strings.Join(kr.Log, "\n"))
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("error does not quote the reason: %v", err)
	}
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		t.Error("the verifier error is not reachable through Unwrap")
	}
}

func TestKernelAcceptsVerifiedObject(t *testing.T) {
	testutil.RequireRoot(t)
	var objs struct {
		Pass    *ebpf.Program `ebpf:"pass"`
		Packets *ebpf.Map     `ebpf:"packets"`
	}
	if err := LoadAndAssign(corpusSpec(t, "xdp_pass.o"), &objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Pass.Close()
	defer objs.Packets.Close()
	// The statistics are logged even on success, for the audit record.
	if !strings.Contains(objs.Pass.VerifierLog, "processed") {
		t.Errorf("no verifier statistics in the log: %q", objs.Pass.VerifierLog)
	}
}

func TestCapLogKeepsTail(t *testing.T) {
	var log []string
	for i := range 1000 {
		log = append(log, fmt.Sprintf("line %04d", i)) // 9 bytes + newline
	}
	got, truncated := capLog(log, 100)
	if !truncated || len(got) != 10 || got[9] != "line 0999" || got[0] != "line 0990" {
		t.Errorf("capLog(1000 lines, 100) = %v, %v", got, truncated)
	}
	got, truncated = capLog(log[:5], 100)
	if truncated || !slices.Equal(got, log[:5]) {
		t.Errorf("capLog(5 lines, 100) = %v, %v", got, truncated)
	}
	kr := &KernelRejection{Program: "p", Log: log}
	if msg := kr.Error(); !strings.HasSuffix(msg, "line 0999") || strings.Contains(msg, "line 0994") {
		t.Errorf("error quotes %q, want the last %d lines", msg, quotedLines)
	}
}

func TestProgramOf(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("program oob: load program: %w", errors.New("permission denied")): "oob",
		errors.New("map packets: creating map"):                                      "",
		errors.New("program with spaces in it"):                                      "",
	} {
		if got := programOf(err); got != want {
			t.Errorf("programOf(%q) = %q, want %q", err, got, want)
		}
	}
}
