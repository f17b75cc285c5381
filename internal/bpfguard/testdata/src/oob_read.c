//go:build ignore

// oob_read.c reads a packet word without checking it against data_end. It
// passes every static check; only the kernel verifier can refuse it.
#include "common.h"

SEC("xdp")
int oob(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	__u32 word = *(volatile __u32 *)(data + 12);
	return word == 0 ? XDP_DROP : XDP_PASS;
}

char __license[] SEC("license") = "GPL";
