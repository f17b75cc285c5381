package executor

import "github.com/aegis-edge/aegis/internal/sandbox"

// WorkerHandlers returns the handlers a worker binary (`aegis
// sandbox-worker`) offers its supervisor: sandbox's built-in ones (test
// payloads, the self-test) and the executor's, HandlerWasm and
// HandlerCompile.
func WorkerHandlers() map[string]sandbox.Handler {
	h := sandbox.BuiltinHandlers()
	h[HandlerWasm] = newWasmHandler()
	h[HandlerCompile] = newCompileHandler()
	return h
}
