//go:build ignore

// max_entries.c declares an array of 2^21 entries, over the default cap of
// 2^20, while staying small enough (16 MiB) for the memory budget.
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 21);
	__type(key, __u32);
	__type(value, __u32);
} big SEC(".maps");

SEC("xdp")
int hoarder(struct xdp_md *ctx)
{
	__u32 key = ctx->rx_queue_index;
	__u32 *v = bpf_map_lookup_elem(&big, &key);
	if (v)
		*v += 1;
	return XDP_PASS;
}

char __license[] SEC("license") = "GPL";
