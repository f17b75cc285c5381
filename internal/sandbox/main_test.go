//go:build linux

package sandbox

import (
	"os"
	"testing"
)

// The test binary is also the worker binary: the pool re-executes it as
// `aegis sandbox-worker` (Config.Executable defaults to /proc/self/exe).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == WorkerSubcommand {
		handlers := BuiltinHandlers()
		handlers[handlerAnswerExit] = HandlerFunc(answerExit)
		WorkerMain(handlers)
	}
	os.Exit(m.Run())
}
