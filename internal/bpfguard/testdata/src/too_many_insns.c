//go:build ignore

// too_many_insns.c pads its program with 5000 no-op moves, over the 4096
// instructions the corpus test's policy allows. The padding is one assembler
// block, so the object stays small (no per-instruction line info).
#include "common.h"

SEC("xdp")
int long_way(struct xdp_md *ctx)
{
	asm volatile(".rept 5000\n\tr0 = r0\n\t.endr" ::: "r0");
	return XDP_PASS;
}

char __license[] SEC("license") = "GPL";
