package admin

import (
	"os"
	"testing"

	"github.com/aegis-edge/aegis/internal/executor"
	"github.com/aegis-edge/aegis/internal/sandbox"
)

// The node runs functions in sandboxed workers that re-execute this binary
// as `aegis sandbox-worker`: the test binary must be one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.WorkerSubcommand {
		sandbox.WorkerMain(executor.WorkerHandlers())
	}
	if spec := os.Getenv(slowClientsEnv); spec != "" {
		slowClientsMain(spec)
	}
	os.Exit(m.Run())
}
