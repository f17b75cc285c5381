package shield

import (
	"errors"
	"fmt"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/aegis-edge/aegis/internal/privilege"
	"github.com/cilium/ebpf"
)

// verifyObject checks the embedded object against the policy before any
// of it reaches the kernel, and records the verdict.
func verifyObject(opts Options) error {
	pol := Policy()
	if opts.Policy != nil {
		pol = *opts.Policy
	}
	obj := opts.object
	if obj == nil {
		obj = Object()
	}
	rep := bpfguard.Verify(obj, pol, nil)
	result := audit.ResultOK
	if !rep.Passed() {
		result = audit.ResultRefused
	}
	details := map[string]any{
		"sha256":          rep.Digest,
		"size":            rep.Size,
		"integrity":       rep.Integrity,
		"programs":        rep.Programs,
		"total_map_bytes": rep.TotalMapBytes,
	}
	if len(rep.Violations) > 0 {
		details["violations"] = rep.Violations
	}
	if err := opts.audit(audit.Event{Op: audit.OpVerify, Target: "shield", Details: details, Result: result, Err: rep.Err()}); err != nil {
		return err
	}
	return rep.Err()
}

// raiseMemlock raises RLIMIT_MEMLOCK where the kernel charges it, to what
// the maps and program being created need, and records what it did.
func raiseMemlock(spec *ebpf.CollectionSpec, opts Options) error {
	need, err := privilege.MemlockNeed(spec)
	if err != nil {
		return err
	}
	res, err := privilege.RaiseMemlock(need, privilege.MemlockOptions{Force: opts.forceMemlock})
	if aerr := opts.audit(audit.Event{Op: audit.OpRlimit, Target: "RLIMIT_MEMLOCK", Details: res, Err: err}); aerr != nil {
		return aerr
	}
	if err != nil {
		return fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	return nil
}

// loadVerified hands the verified spec to the kernel with the verifier log
// enabled; a refusal is recorded with the whole (capped) log.
func (s *Shield) loadVerified(spec *ebpf.CollectionSpec, collOpts *ebpf.CollectionOptions, opts Options) error {
	err := bpfguard.LoadAndAssign(spec, &s.objs, collOpts)
	var rej *bpfguard.KernelRejection
	if errors.As(err, &rej) {
		if aerr := opts.audit(audit.Event{Op: audit.OpVerifierReject, Target: rej.Program, Result: audit.ResultRefused, Err: rej,
			Details: map[string]any{"log": rej.Log, "log_truncated": rej.Truncated}}); aerr != nil {
			return aerr
		}
		return err
	}
	if err != nil {
		if aerr := opts.audit(audit.Event{Op: audit.OpLoad, Target: "shield", Err: err}); aerr != nil {
			return errors.Join(err, aerr)
		}
		return err
	}
	details := map[string]any{"pin_path": s.pinPath, "adopted_maps": s.Adopted, "perf_events": s.perf}
	if info, ierr := s.objs.AegisXdp.Info(); ierr == nil {
		if id, ok := info.ID(); ok {
			details["program_id"] = id
		}
	}
	if aerr := opts.audit(audit.Event{Op: audit.OpLoad, Target: "shield", Details: details}); aerr != nil {
		s.objs.Close()
		return aerr
	}
	if s.pinPath != "" && !s.Adopted {
		if aerr := opts.audit(audit.Event{Op: audit.OpPin, Target: s.mapsDir(), Details: map[string]any{"maps": len(spec.Maps)}}); aerr != nil {
			s.objs.Close()
			return aerr
		}
	}
	return nil
}

// checkPrivileges names the capabilities the process lacks before any eBPF
// work starts.
func checkPrivileges(opts Options) error {
	if err := privilege.CheckCapabilities(); err != nil {
		if aerr := opts.audit(audit.Event{Op: audit.OpLoad, Target: "shield", Result: audit.ResultRefused, Err: err}); aerr != nil {
			return aerr
		}
		return err
	}
	return nil
}

func (o Options) audit(ev audit.Event) error {
	if o.Audit == nil {
		return nil
	}
	if err := o.Audit(ev); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}
