// Package privilege decides and checks what aegis needs from the kernel
// before it does any eBPF work: the capabilities that loading, pinning and
// attaching the shield require on the running kernel, and the
// RLIMIT_MEMLOCK budget that kernels before 5.11 charge BPF maps and
// programs against.
//
// Required and Check answer "may this process load the shield?" up front and
// name what is missing, instead of leaving the operator to decode an EPERM
// from deep inside the loader. RaiseMemlock raises the memlock limit only
// where the kernel still charges it, to a bound computed from the objects
// about to be created (MemlockNeed), never to infinity, and returns a
// MemlockResult for the caller to log and audit.
//
// The package is not a capability manager: it never gains, drops or
// transfers capabilities (systemd's CapabilityBoundingSet does that, see
// deploy/aegis.service and docs/SECURITY.md), and it does not load eBPF
// objects itself beyond the one-entry map of the accounting probe.
package privilege
