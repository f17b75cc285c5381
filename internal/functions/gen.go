package functions

// Test modules: hello1 and hello2 answer with their version, spin loops
// forever.
//go:generate wat2wasm testdata/hello1.wat -o testdata/hello1.wasm
//go:generate wat2wasm testdata/hello2.wat -o testdata/hello2.wasm
//go:generate wat2wasm testdata/spin.wat -o testdata/spin.wasm
