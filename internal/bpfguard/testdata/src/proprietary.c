//go:build ignore

// proprietary.c is a valid XDP program under a license the kernel does not
// consider GPL-compatible.
#include "common.h"

SEC("xdp")
int closed(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char __license[] SEC("license") = "Proprietary";
