// Package examples holds edge functions that show the ABI in three
// languages, each with its committed .wasm: hello-wat (hand-written WAT),
// echo-c (C with Debian's wasi-libc and sdk/c/aegis.h), hello-c (plain
// WASI C, the gateway benchmark's module) and hello-go
// (GOOS=wasip1 with sdk/go/aegis). `go generate ./examples` rebuilds them
// byte for byte; examples_test.go runs each through the engine. Nothing
// here is imported by the node.
package examples

//go:generate wat2wasm hello-wat/hello.wat -o hello-wat/hello.wasm
//go:generate clang --target=wasm32-wasi -O2 -s -I ../sdk/c -o echo-c/echo.wasm echo-c/echo.c
//go:generate clang --target=wasm32-wasi -O2 -s -o hello-c/hello.wasm hello-c/hello.c
//go:generate env GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -trimpath -ldflags=-buildid= -o hello-go/hello.wasm ./hello-go
