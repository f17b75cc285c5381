// Package bpfguard checks eBPF objects before they reach the kernel. Verify
// takes the raw bytes of an ELF object, a Policy and an optional detached
// signature and returns a Report: what the object contains (programs and the
// helpers they call, maps and their estimated memory, license, SHA-256) and
// every Violation found. The cheap structural checks run on the raw bytes
// first, so the richer ELF parser (cilium/ebpf) only ever sees objects whose
// header and section table are sane; any failure of that parser becomes a
// violation, never a panic. LoadCollection and LoadAndAssign are the second
// stage: they hand an accepted object to the kernel with the verifier log
// enabled and turn a rejection into a KernelRejection quoting the log.
//
// Sign defines aegis's object signatures: a detached ed25519 signature over
// the object's SHA-256, stored as base64 text. The keys are package keyfile's
// (PEM key files, KeyID), the same keys the fleet signs changes with.
//
// The package decides nothing about which objects a caller loads or when, and
// keeps no state: the shield loader, the audit log and the CLI call into it.
// It does not replace the kernel verifier (it cannot prove memory safety);
// it narrows what the verifier is ever asked to accept.
package bpfguard
