package wasm_test

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/aegis-edge/aegis/internal/wasm"
)

// Compile a function once, then serve a request on a fresh instance.
func ExampleModule_Serve() {
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.EngineOptions{})
	if err != nil {
		panic(err)
	}
	defer engine.Close(ctx)

	module, err := os.ReadFile("../../examples/hello-wat/hello.wasm")
	if err != nil {
		panic(err)
	}
	fn, err := engine.Compile(ctx, module, wasm.DefaultLimits())
	if err != nil {
		panic(err)
	}
	defer fn.Close()

	resp, err := fn.Serve(ctx, wasm.Invocation{
		Function: "hello",
		Version:  "1",
		Request:  wasm.Request{Method: http.MethodGet, ScriptName: "/hello", PathInfo: "/", Header: http.Header{}},
		Host:     &wasm.LocalHost{KV: wasm.NewMemoryKV(nil)},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	fmt.Print(string(resp.Body))
	// Output:
	// 200 text/plain; charset=utf-8
	// Hello, world!
}
