package executor

import (
	"os"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox"
)

// The test binary is also the worker binary: the pool re-executes it as
// `aegis sandbox-worker` (sandbox.Config.Executable defaults to
// /proc/self/exe).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.WorkerSubcommand {
		sandbox.WorkerMain(WorkerHandlers())
	}
	os.Exit(m.Run())
}
