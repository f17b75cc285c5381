// Command wazero-peer is the naive in-process peer of the function
// benchmark (scripts/bench-functions.sh): the least a Go server needs to run
// a WASI module CGI-style with wazero. It compiles the module once and, per
// request, instantiates it fresh with stdin = body, stdout captured and two
// environment variables, runs _start and strips the CGI header. No fuel, no
// sandbox, no limits, no logs: the figure aegis is measured against.
//
// Usage: wazero-peer MODULE.wasm ADDR
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: wazero-peer MODULE.wasm ADDR")
		os.Exit(2)
	}
	code, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		log.Fatal(err)
	}
	base := wazero.NewModuleConfig().WithName("")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out bytes.Buffer
		cfg := base.WithStdin(bytes.NewReader(body)).WithStdout(&out).
			WithEnv("REQUEST_METHOD", r.Method).WithEnv("PATH_INFO", r.URL.Path)
		mod, err := rt.InstantiateModule(r.Context(), compiled, cfg)
		if mod != nil {
			mod.Close(r.Context())
		}
		if err != nil && !isExit0(err) {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		// Strip the CGI header: everything up to the first blank line.
		resp := out.Bytes()
		if i := bytes.Index(resp, []byte("\n\n")); i >= 0 {
			resp = resp[i+2:]
		} else if i := bytes.Index(resp, []byte("\r\n\r\n")); i >= 0 {
			resp = resp[i+4:]
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(resp)
	})
	log.Fatal(http.ListenAndServe(os.Args[2], nil))
}

// isExit0 reports whether err is the module calling proc_exit(0).
func isExit0(err error) bool {
	type exitCoder interface{ ExitCode() uint32 }
	ec, ok := err.(exitCoder)
	return ok && ec.ExitCode() == 0
}
