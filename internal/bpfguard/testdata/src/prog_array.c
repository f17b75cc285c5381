//go:build ignore

// prog_array.c declares a program array: tail calls through it would run
// programs that never went through verification, so the map type is refused.
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jumps SEC(".maps");

SEC("xdp")
int jumper(struct xdp_md *ctx)
{
	__u32 key = 0;
	void *p = bpf_map_lookup_elem(&jumps, &key);
	return p ? XDP_PASS : XDP_PASS;
}

char __license[] SEC("license") = "GPL";
