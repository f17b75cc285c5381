// Package admin is the node's control API: HTTP/JSON over a unix socket
// (mode 0600, so only root or the socket's owner can reach it), and the
// client the CLI uses, one typed method per operation. The routes are
// spelt once (api.go) for server and client. The caller's uid and pid, read
// from SO_PEERCRED, are the actor recorded for every change.
//
// It is transport only: the operations themselves live in package node.
package admin
