package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/cilium/ebpf"
	"github.com/spf13/cobra"
)

func newEBPFCmd(e *env) *cobra.Command {
	cmd := groupCmd("ebpf", "Check eBPF objects against a policy, sign them, make signing keys")
	cmd.AddCommand(newEBPFVerifyCmd(e), newEBPFSignCmd(e), newEBPFKeygenCmd(e))
	return cmd
}

// verifyOutput is what `aegis ebpf verify --json` prints: the report, plus
// the kernel verifier's answer when --kernel asked for it.
type verifyOutput struct {
	File   string `json:"file"`
	Passed bool   `json:"passed"`
	*bpfguard.Report
	Kernel *kernelOutput `json:"kernel,omitempty"`
}

type kernelOutput struct {
	Passed bool     `json:"passed"`
	Error  string   `json:"error,omitempty"`
	Log    []string `json:"log,omitempty"`
}

func newEBPFVerifyCmd(e *env) *cobra.Command {
	var (
		policyPath, sigPath string
		keyPaths, digests   []string
		asJSON, kernel      bool
		shieldPolicy        bool
	)
	cmd := &cobra.Command{
		Use:   "verify FILE.o [--policy FILE | --shield] [--sig FILE] [--key PUB.pem]... [--json] [--kernel]",
		Short: "Check an eBPF object against a policy; exit 0 pass, 1 reject",
		Long: `Check an eBPF ELF object against a policy (the generic default policy, or
--policy FILE in YAML) and print its programs, maps, license, digest and every
violation. The object must be trusted: its SHA-256 is among the policy's
allowed digests (or --digest), or it carries a detached signature (--sig,
default FILE.o.sig when present) from one of the policy's keys (or --key).
With --kernel, an object that passes is also loaded into the kernel, unpinned,
to run the kernel verifier, and unloaded again (needs CAP_BPF).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			p := bpfguard.DefaultPolicy()
			if shieldPolicy && policyPath != "" {
				return usageError{fmt.Errorf("--shield and --policy are exclusive")}
			}
			if shieldPolicy {
				p = shield.Policy()
			}
			if policyPath != "" {
				var err error
				if p, err = bpfguard.LoadPolicy(policyPath); err != nil {
					return err
				}
			}
			for _, kp := range keyPaths {
				k, err := keyfile.ReadPublicKey(kp)
				if err != nil {
					return err
				}
				p = p.WithPublicKeys(k)
			}
			p = p.WithDigests(digests...)
			obj, size, err := readObject(a[0], p.MaxObjectSize)
			if err != nil {
				return err
			}
			sig, err := readSignature(a[0], sigPath)
			if err != nil {
				return err
			}
			r := bpfguard.Verify(obj, p, sig)
			r.Size = size
			out := verifyOutput{File: a[0], Passed: r.Passed(), Report: r}
			if kernel && r.Passed() {
				out.Kernel = kernelVerify(obj)
				out.Passed = out.Kernel.Passed
			}
			if asJSON {
				if err := e.printJSON(out); err != nil {
					return err
				}
			} else {
				printReport(e.stdout, out)
			}
			switch {
			case !r.Passed():
				return fmt.Errorf("%s rejected: %d violation(s)", a[0], len(r.Violations))
			case !out.Passed:
				return fmt.Errorf("%s rejected by the kernel verifier", a[0])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyPath, "policy", "", "policy file (YAML); default: the generic default policy")
	f.StringVar(&sigPath, "sig", "", "detached signature (default FILE.o.sig if it exists)")
	f.StringArrayVar(&keyPaths, "key", nil, "also trust this PEM public key (repeatable)")
	f.StringArrayVar(&digests, "digest", nil, "also trust the object with this hex SHA-256 (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&kernel, "kernel", false, "also run the kernel verifier on an object that passes")
	f.BoolVar(&shieldPolicy, "shield", false, "use the shield's own policy (its maps, helpers and recorded digest)")
	return cmd
}

// readObject reads at most limit+1 bytes of the object, enough for Verify to
// refuse an oversized one without reading it all, and returns its real size.
func readObject(path string, limit int) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading object: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("reading object: %w", err)
	}
	obj, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading object %s: %w", path, err)
	}
	return obj, max(int(fi.Size()), len(obj)), nil
}

// maxSignatureSize bounds a signature file; a real one is 89 bytes.
const maxSignatureSize = 4 << 10

// readSignature reads the named signature, or OBJECT.sig when none is named
// and it exists. No signature is not an error: the object may be trusted by
// its digest.
func readSignature(obj, path string) ([]byte, error) {
	explicit := path != ""
	if !explicit {
		path = obj + ".sig"
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading signature: %w", err)
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSignatureSize))
}

// kernelVerify loads the object with nothing pinned, so the kernel verifier
// runs, and closes it again.
func kernelVerify(obj []byte) *kernelOutput {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return &kernelOutput{Error: err.Error()}
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := bpfguard.LoadCollection(spec, nil)
	if err != nil {
		out := &kernelOutput{Error: err.Error()}
		var kr *bpfguard.KernelRejection
		if errors.As(err, &kr) {
			out.Log = kr.Log
		}
		return out
	}
	coll.Close()
	return &kernelOutput{Passed: true}
}

func printReport(w io.Writer, out verifyOutput) {
	r := out.Report
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "object:\t%s (%d bytes)\n", out.File, r.Size)
	fmt.Fprintf(tw, "sha256:\t%s\n", orNone(r.Digest))
	fmt.Fprintf(tw, "license:\t%s\n", orNone(r.License))
	integrity := orNone(r.Integrity)
	if r.SignedBy != "" {
		integrity += " by key " + r.SignedBy
	}
	fmt.Fprintf(tw, "integrity:\t%s\n", integrity)
	if len(r.Programs) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PROGRAM\tSECTION\tTYPE\tINSTRUCTIONS\tHELPERS")
		for _, p := range r.Programs {
			calls := append(append([]string(nil), p.Helpers...), p.Kfuncs...)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, p.Section, p.Type, p.Instructions, orNone(strings.Join(calls, ", ")))
		}
	}
	if len(r.Maps) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "MAP\tTYPE\tKEY\tVALUE\tENTRIES\tFLAGS\tEST. MEMORY")
		for _, m := range r.Maps {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%#x\t%s\n", m.Name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, bytesIEC(m.EstimatedBytes))
		}
		fmt.Fprintf(tw, "total\t\t\t\t\t\t%s\n", bytesIEC(r.TotalMapBytes))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, v := range r.Violations {
		fmt.Fprintf(w, "violation: %s\n", v)
	}
	if k := out.Kernel; k != nil {
		if k.Passed {
			fmt.Fprintln(w, "kernel verifier: accepted")
		} else {
			fmt.Fprintf(w, "kernel verifier: %s\n", k.Error)
		}
	}
	if out.Passed {
		fmt.Fprintln(w, "result: pass")
	} else {
		fmt.Fprintln(w, "result: reject")
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// bytesIEC prints a byte count with a binary unit.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newEBPFSignCmd(e *env) *cobra.Command {
	var keyPath, outPath string
	cmd := &cobra.Command{
		Use:   "sign FILE.o --key KEY.pem [-o FILE.o.sig]",
		Short: "Write a detached ed25519 signature of an eBPF object",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if keyPath == "" {
				return usageError{errors.New("--key is required")}
			}
			key, err := keyfile.ReadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			obj, err := os.ReadFile(a[0])
			if err != nil {
				return fmt.Errorf("reading object: %w", err)
			}
			if outPath == "" {
				outPath = a[0] + ".sig"
			}
			if err := os.WriteFile(outPath, bpfguard.Sign(obj, key), 0o644); err != nil {
				return fmt.Errorf("writing signature: %w", err)
			}
			fmt.Fprintf(e.stdout, "signed %s with key %s: %s\n", a[0], keyfile.KeyID(key.Public().(ed25519.PublicKey)), outPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "private key file (PEM PKCS#8, from aegis ebpf keygen)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "signature file (default FILE.o.sig)")
	return cmd
}

func newEBPFKeygenCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen NAME",
		Short: "Create a signing key pair: NAME.key (private, mode 0600) and NAME.pub",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			pub, err := keyfile.GenerateFiles(a[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "key %s: private %s.key, public %s.pub\n", keyfile.KeyID(pub), a[0], a[0])
			return nil
		},
	}
}
