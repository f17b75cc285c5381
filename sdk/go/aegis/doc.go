// Package aegis is the guest side of the aegis host module, for edge
// functions written in Go and built with GOOS=wasip1 GOARCH=wasm.
//
// A function is a WASI command in the CGI style: package main reads the
// request from os.Getenv (REQUEST_METHOD, PATH_INFO, QUERY_STRING,
// HTTP_*) and os.Stdin, and prints a CGI response on os.Stdout:
//
//	fmt.Print("Content-Type: text/plain\n\nhello\n")
//
// This package adds what CGI lacks: KVGet, KVSet and KVDelete on the
// function's own key-value store, Fetch to the hosts the function is
// allowed to reach, and Log for structured log lines. docs/ABI.md in the
// aegis repository is the reference for the underlying imports.
//
// Its code builds only for wasip1; on other platforms the package is empty,
// so the host's build ignores it. It is not a client for the node's admin
// API.
package aegis
