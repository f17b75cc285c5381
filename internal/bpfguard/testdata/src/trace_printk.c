//go:build ignore

// trace_printk.c logs every packet through bpf_trace_printk, a debugging
// helper that must not reach production (it is slow and floods the trace pipe).
#include "common.h"

SEC("xdp")
int chatty(struct xdp_md *ctx)
{
	bpf_printk("packet on %u", ctx->ingress_ifindex);
	return XDP_PASS;
}

char __license[] SEC("license") = "GPL";
