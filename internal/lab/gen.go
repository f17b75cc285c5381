//go:build linux

package lab

import _ "embed"

//go:generate wat2wasm function.wat -o function.wasm

// functionModule is the edge function the lab deploys unless told
// otherwise, built from function.wat and embedded so that the lab needs no
// file beside the binary.
//
//go:embed function.wasm
var functionModule []byte

// FunctionName and FunctionRoute are where the lab deploys its function.
const (
	FunctionName  = "lab-hello"
	FunctionRoute = "/hello"
)
