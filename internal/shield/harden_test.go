//go:build linux

package shield

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/aegis-edge/aegis/internal/privilege"
	tu "github.com/aegis-edge/aegis/internal/testutil"
	"golang.org/x/sys/unix"
)

// recorder collects audit events and can be told to fail.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   func(audit.Event) bool
}

func (r *recorder) record(ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil && r.fail(ev) {
		return errors.New("disk full")
	}
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		res := ev.Result
		if res == "" {
			res = audit.ResultOK
			if ev.Err != nil {
				res = audit.ResultFailed
			}
		}
		out = append(out, ev.Op+":"+res)
	}
	return out
}

func TestLoadAuditsEveryStep(t *testing.T) {
	tu.RequireRoot(t)
	v := tu.NewVethPair(t)
	pin := tu.PinPath(t)
	var rec recorder
	s, err := Load(Options{PinPath: pin, Audit: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := attachErr(t, v, s, XDPAuto); err != nil {
		t.Fatal(err)
	}
	if err := detachB(t, v, s); err != nil {
		t.Fatal(err)
	}
	want := []string{"ebpf.verify:ok", "ebpf.rlimit:ok", "ebpf.load:ok", "ebpf.pin:ok", "ebpf.attach:ok", "ebpf.detach:ok"}
	if got := rec.ops(); !slices.Equal(got, want) {
		t.Fatalf("audited %v, want %v", got, want)
	}
	verify := rec.events[0].Details.(map[string]any)
	if verify["sha256"] != ObjectDigest() || verify["integrity"] != bpfguard.IntegrityDigest {
		t.Errorf("verify record details: %v", verify)
	}

	// A second daemon adopts the pinned maps: no new pin.
	var rec2 recorder
	s2, err := Load(Options{PinPath: pin, Audit: rec2.record})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if got := rec2.ops(); slices.Contains(got, "ebpf.pin:ok") {
		t.Errorf("adopting load recorded a pin: %v", got)
	}
}

func TestLoadRefusesTamperedObject(t *testing.T) {
	tu.RequireRoot(t)
	obj := slices.Clone(Object())
	obj[len(obj)/2] ^= 0xff
	pin := tu.PinPath(t)
	var rec recorder
	_, err := Load(Options{PinPath: pin, Audit: rec.record, object: obj})
	var rej *bpfguard.RejectedError
	if !errors.As(err, &rej) || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("Load of a tampered object = %v, want an integrity rejection", err)
	}
	if got := rec.ops(); !slices.Equal(got, []string{"ebpf.verify:refused"}) {
		t.Errorf("audited %v", got)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused object still created %s: %v", pin, err)
	}
}

func TestLoadKernelRejection(t *testing.T) {
	tu.RequireRoot(t)
	obj, err := os.ReadFile("testdata/shield_oob.o")
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy().WithDigests(bpfguard.Verify(obj, bpfguard.DefaultPolicy(), nil).Digest)
	var rec recorder
	_, err = Load(Options{Audit: rec.record, Policy: &pol, object: obj})
	var kr *bpfguard.KernelRejection
	if !errors.As(err, &kr) || !strings.Contains(err.Error(), "outside of the packet") {
		t.Fatalf("Load = %v, want the verifier's refusal quoting its log", err)
	}
	got := rec.ops()
	if !slices.Equal(got, []string{"ebpf.verify:ok", "ebpf.rlimit:ok", "ebpf.verifier_reject:refused"}) {
		t.Fatalf("audited %v", got)
	}
	log := rec.events[2].Details.(map[string]any)["log"].([]string)
	if !strings.Contains(strings.Join(log, "\n"), "outside of the packet") {
		t.Errorf("audit record lacks the verifier log: %q", log)
	}
}

func TestLoadFailsClosedWithoutAudit(t *testing.T) {
	tu.RequireRoot(t)
	for _, op := range []string{audit.OpVerify, audit.OpRlimit, audit.OpLoad, audit.OpPin} {
		t.Run(op, func(t *testing.T) {
			pin := tu.PinPath(t)
			rec := recorder{fail: func(ev audit.Event) bool { return ev.Op == op }}
			s, err := Load(Options{PinPath: pin, Audit: rec.record})
			if err == nil {
				s.Close()
				t.Fatal("Load succeeded although its audit record could not be written")
			}
			if !strings.Contains(err.Error(), "audit log: disk full") {
				t.Errorf("error = %v", err)
			}
		})
	}
	// An attach that cannot be audited is undone; a detach is not done.
	v := tu.NewVethPair(t)
	rec := recorder{}
	s, err := Load(Options{Audit: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec.fail = func(ev audit.Event) bool { return ev.Op == audit.OpAttach }
	if err := attachErr(t, v, s, XDPAuto); err == nil {
		t.Fatal("Attach succeeded without its audit record")
	}
	if got, _ := s.Attached(); len(got) != 0 {
		t.Fatalf("unaudited attachment left in place: %+v", got)
	}
	rec.fail = nil
	if err := attachErr(t, v, s, XDPAuto); err != nil {
		t.Fatal(err)
	}
	rec.fail = func(ev audit.Event) bool { return ev.Op == audit.OpDetach }
	if err := detachB(t, v, s); err == nil {
		t.Fatal("Detach succeeded without its audit record")
	}
	if got, _ := s.Attached(); len(got) != 1 {
		t.Fatalf("unaudited detach happened: %+v", got)
	}
}

func TestLoadRaisesMemlockOnlyWhenCharged(t *testing.T) {
	tu.RequireRoot(t)
	var before unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &before); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &before) })
	for _, force := range []bool{false, true} {
		var rec recorder
		s, err := Load(Options{Audit: rec.record, forceMemlock: force})
		if err != nil {
			// Raising the limit above the hard limit takes CAP_SYS_RESOURCE,
			// which some sandboxes withhold even from root.
			var cur unix.Rlimit
			unix.Getrlimit(unix.RLIMIT_MEMLOCK, &cur)
			if force && strings.Contains(err.Error(), "CAP_SYS_RESOURCE") && cur.Max < privilege.MemlockCeiling {
				t.Logf("forced raise refused as expected without CAP_SYS_RESOURCE: %v", err)
				if got := rec.ops(); !slices.Contains(got, "ebpf.rlimit:failed") {
					t.Errorf("refused raise not audited: %v", got)
				}
				continue
			}
			t.Fatal(err)
		}
		s.Close()
		var res privilege.MemlockResult
		for _, ev := range rec.events {
			if ev.Op == audit.OpRlimit {
				res = ev.Details.(privilege.MemlockResult)
			}
		}
		memcg, err := privilege.MemcgAccounting()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !force && memcg:
			if res.Changed || res.Skipped != privilege.SkipMemcg {
				t.Errorf("memcg kernel: rlimit result %+v, want untouched", res)
			}
		default:
			if res.Need == 0 || res.New.Soft == privilege.Unlimited || res.New.Soft > privilege.MemlockCeiling || res.New.Soft < min(res.Need, privilege.MemlockCeiling) {
				t.Errorf("forced rlimit result %+v: want a finite bound covering the need, at most the ceiling", res)
			}
		}
	}
}
