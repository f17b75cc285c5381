//go:build ignore

// kprobe.c is a harmless kprobe: rejected only because its program type is
// not on an XDP-only allowlist.
#include "common.h"

SEC("kprobe/do_sys_openat2")
int probe(void *ctx)
{
	return 0;
}

char __license[] SEC("license") = "GPL";
