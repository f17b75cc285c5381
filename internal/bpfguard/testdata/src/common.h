// common.h holds the includes every corpus program shares.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
