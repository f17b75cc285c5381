//go:build ignore

// probe_write_user.c calls bpf_probe_write_user, which writes into user
// memory of whatever process runs: a helper no policy of aegis allows.
#include "common.h"

SEC("xdp")
int scribble(struct xdp_md *ctx)
{
	__u64 v = 0;
	bpf_probe_write_user((void *)(long)ctx->data, &v, sizeof(v));
	return XDP_PASS;
}

char __license[] SEC("license") = "GPL";
