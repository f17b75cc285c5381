package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aegis-edge/aegis/internal/audit"
)

// The node records an operation before applying it, and records the
// failure of the apply with a reference to the first record.
func Example() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)

	log, err := audit.Open(dir, audit.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	attach, err := log.Append(ctx, audit.Event{Op: audit.OpAttach, Target: "eth0", Actor: "uid=0 pid=4242",
		Details: map[string]string{"xdp_mode": "native"}})
	if err != nil {
		return // fail closed: not audited, so not applied
	}
	applyErr := errors.New("native XDP not supported by the driver")
	log.Append(ctx, audit.Event{Op: audit.OpAttach, Target: "eth0", Actor: attach.Actor, Err: applyErr, Ref: attach.Seq})
	log.Close()

	res, err := audit.VerifyDir(dir)
	fmt.Println(res.Records, res.LastSeq, err)
	recs, _, _ := audit.Tail(dir, 1, nil)
	fmt.Println(recs[0].Op, recs[0].Result, recs[0].Ref, recs[0].Error)
	// Output:
	// 2 2 <nil>
	// ebpf.attach failed 1 native XDP not supported by the driver
}
