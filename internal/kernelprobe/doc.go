// Package kernelprobe finds out what the running kernel offers aegis: XDP and
// the eBPF map types, helpers and link types the shield uses, CAP_BPF,
// memcg accounting of BPF memory, Landlock's ABI level, seccomp's thread
// sync and user notification, and the cgroup version. Probe returns one
// Report row per feature: whether it is there, the kernel version that
// brought it, and what aegis does without it.
//
// It only reports. The fallbacks themselves live with the code that needs
// them (the shield's netlink attach and perf buffer, the loader's
// RLIMIT_MEMLOCK, the sandbox's best-effort Landlock); a caller reads the
// Report to choose them, and `aegis doctor` prints it.
//
// Probes ask the kernel directly (cilium/ebpf's features package and a few
// syscalls of their own) rather than trusting the version number, since
// distributions backport features and configurations leave them out. Most
// need the privileges the node runs with; without them a row says the probe
// could not tell. The memcg probe lowers RLIMIT_MEMLOCK for a moment, so
// Probe belongs at start-up, before anything else creates BPF maps.
package kernelprobe
