//go:build ignore

// xdp_pass.c is the corpus's well-behaved object: an XDP program that counts
// packets in a small hash map and passes them. Every check accepts it, and
// the structural cases are derived from its bytes.
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 *n = bpf_map_lookup_elem(&packets, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_PASS;
}

char __license[] SEC("license") = "GPL";
