// Package shield is aegis's kernel data path: an XDP program (bpf/shield.c,
// compiled by bpf2go) that drops traffic from blocklisted and flooding
// sources, and the Go side that loads it, pins it under bpffs, attaches it to
// interfaces through bpf_link and manipulates its maps.
//
// The package owns the kernel objects only. It does not decide policy: limits,
// persistence, the lockout guard and the admin API live in the node package,
// which calls into this one. Everything here keeps working without the daemon:
// the program, its maps and its links are pinned, so a crashed or restarted
// daemon never opens the gate.
//
// The data path is Linux's: the types other packages name (api.go,
// shield.go) build everywhere, and elsewhere Load fails (shield_other.go).
package shield
