package wasm

// Test fixtures: every testdata/**/*.wat (the compile bombs of the hostile
// corpus are written by mkhostile first), and the C fixture with the SDK.
//go:generate go run ./internal/mkhostile testdata/hostile
//go:generate sh -c "for f in testdata/*.wat testdata/invalid/*.wat testdata/hostile/*.wat; do wat2wasm \"$DOLLAR{f}\" -o \"$DOLLAR{f%.wat}.wasm\" || exit 1; done"
//go:generate clang --target=wasm32-wasi -O2 -s -I ../../sdk/c -o testdata/hostcalls.wasm testdata/hostcalls.c
