package fuel

// The test corpus: WAT sources, a C program and a Go program compiled into
// testdata/*.wasm (all byte-reproducible with the same tools), then the
// fuzz seeds derived from them.
//go:generate wat2wasm --debug-names testdata/control.wat -o testdata/control.wasm
//go:generate wat2wasm --debug-names testdata/simd.wat -o testdata/simd.wasm
//go:generate wat2wasm --debug-names testdata/bulk.wat -o testdata/bulk.wasm
//go:generate wat2wasm --debug-names testdata/programs.wat -o testdata/programs.wasm
//go:generate wat2wasm --debug-names testdata/runaway.wat -o testdata/runaway.wasm
//go:generate clang --target=wasm32-wasi -O2 -o testdata/program_c.wasm testdata/program.c
//go:generate env GOOS=wasip1 GOARCH=wasm go build -C testdata/goprog -trimpath -buildvcs=false -o ../program_go.wasm .
//go:generate go run ./internal/mkseeds testdata testdata/fuzz/FuzzInstrument
