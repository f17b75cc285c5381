package privilege_test

import (
	"log/slog"
	"os"

	"github.com/aegis-edge/aegis/internal/privilege"
	"github.com/cilium/ebpf"
)

// The order a loader follows: capabilities first, then the memlock budget
// for exactly the objects about to be created, logged either way.
func Example() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := privilege.CheckCapabilities(); err != nil {
		log.Error("cannot load the shield", "err", err) // names each missing capability
		return
	}
	spec, err := ebpf.LoadCollectionSpec("shield_bpfel.o")
	if err != nil {
		log.Error("reading object", "err", err)
		return
	}
	need, err := privilege.MemlockNeed(spec)
	if err != nil {
		log.Error("estimating locked memory", "err", err)
		return
	}
	res, err := privilege.RaiseMemlock(need, privilege.MemlockOptions{})
	log.Info("locked memory for BPF", "memlock", res, "err", err)
}
