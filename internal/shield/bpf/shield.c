//go:build ignore

// shield.c is aegis's XDP data path: allowlist, blocklist, automatic blocks and
// per-source rate limits, in that order. Anything the parser does not understand
// passes and is counted: the shield must never black-hole a node. Packets that
// hide their class from the limiter do not pass unclassified: a fragment is
// charged to its protocol's bucket, a TCP first fragment too short to hold the
// flags (and a TCP fragment at offset 1) is dropped, and an IPv6 header chain
// longer than the parser walks is dropped or charged, as configured.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Capacity ceilings of the list maps. The configured limits (100,000 IPv4 and
// 50,000 IPv6 blocklist entries by default) are enforced by the daemon, which
// counts exact and prefix entries of a family together; these sizes are the
// kernel's hard backstop. Maps are not preallocated, so memory follows use.
//
// Exact addresses and prefixes are both hash maps: a prefix's key is its
// length and its masked address. The data path finds a source's longest
// live prefix by looking up, longest first, only the lengths that prefixes
// covering the source's bucket have (prefix_lens_v4/v6): one hash lookup
// for most listed sources, where an LPM trie walk cost five times that.
#define BLOCK_V4_CEILING (1 << 20)
#define BLOCK_V6_CEILING (1 << 19)
#define ALLOW_CEILING    (1 << 16)
#define MGMT_CEILING     1024

#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT  6
#define NSEC_PER_SEC  1000000000ULL

enum verdict_reason {
	REASON_PASSED = 0,
	REASON_ALLOWLISTED = 1,
	REASON_BLOCKED_EXACT = 2,
	REASON_BLOCKED_PREFIX = 3,
	REASON_RATE_SYN = 4,
	REASON_RATE_UDP = 5,
	REASON_RATE_ICMP = 6,
	REASON_AUTO_BLOCKED = 7,
	REASON_MALFORMED = 8,
	REASON_NON_IP = 9,
	REASON_FRAGMENT = 10,     // TCP fragment hiding or rewriting the flags
	REASON_HEADER_CHAIN = 11, // IPv6 header chain longer than the parser walks
	REASON_MAX = 12,
};

// DROP_REASONS has bit r set when reason r drops the packet in enforce mode.
#define DROP_REASONS                                                                   \
	((1u << REASON_BLOCKED_EXACT) | (1u << REASON_BLOCKED_PREFIX) |                \
	 (1u << REASON_RATE_SYN) | (1u << REASON_RATE_UDP) | (1u << REASON_RATE_ICMP) | \
	 (1u << REASON_AUTO_BLOCKED) | (1u << REASON_FRAGMENT) | (1u << REASON_HEADER_CHAIN))

enum rate_class {
	CLASS_SYN = 0,
	CLASS_UDP = 1,
	CLASS_ICMP = 2,
	CLASS_MAX = 3,
	CLASS_NONE = 0xff,
};

enum shield_mode {
	MODE_ENFORCE = 0,
	MODE_MONITOR = 1,
};

// Flags in shield_config.flags.
enum config_flag {
	// FLAG_CHARGE_LONG_CHAINS charges an IPv6 packet whose header chain is
	// longer than the parser walks to its source's SYN bucket instead of
	// dropping it.
	FLAG_CHARGE_LONG_CHAINS = 1 << 0,
};

// Fragment kinds of a packet.
enum frag_kind {
	FRAG_NONE = 0,  // not fragmented (or an IPv6 atomic fragment)
	FRAG_FIRST = 1, // offset 0, more fragments follow
	FRAG_LATER = 2, // offset > 0: no L4 header
};

// Presence flags let the data path skip lookups in maps the daemon knows are
// empty; the daemon sets a flag before the first entry goes in and clears it
// after the last one leaves.
enum presence_flag {
	HAS_ALLOW_V4 = 1 << 0,
	HAS_ALLOW_V4_PREFIX = 1 << 1,
	HAS_ALLOW_V6 = 1 << 2,
	HAS_ALLOW_V6_PREFIX = 1 << 3,
	HAS_BLOCK_V4 = 1 << 4,
	HAS_BLOCK_V4_PREFIX = 1 << 5,
	HAS_BLOCK_V6 = 1 << 6,
	HAS_BLOCK_V6_PREFIX = 1 << 7,
	// The exact hash maps hold entries (those the exact tables had no
	// way for, or entries an earlier version put there). HAS_ALLOW_V4
	// and the like say the list has exact entries at all.
	HAS_ALLOW_V4_HASH = 1 << 8,
	HAS_ALLOW_V6_HASH = 1 << 9,
	HAS_BLOCK_V4_HASH = 1 << 10,
	HAS_BLOCK_V6_HASH = 1 << 11,
	// The prefix hash maps hold entries (those the prefix tables had no
	// way for, or entries an earlier version put there).
	HAS_ALLOW_V4_PREFIX_HASH = 1 << 12,
	HAS_ALLOW_V6_PREFIX_HASH = 1 << 13,
	HAS_BLOCK_V4_PREFIX_HASH = 1 << 14,
	HAS_BLOCK_V6_PREFIX_HASH = 1 << 15,
};

// bucket is one traffic class's rate limit as a GCRA token bucket.
struct bucket {
	__u64 interval_ns;    // ns per packet (1e9 / pps); 0 = class not limited
	__u64 tolerance_ns;   // burst * interval_ns
	__u64 autoblock_pkts; // packets in one second that trigger an automatic block; 0 = never
};

struct shield_config {
	__u32 mode;
	__u32 presence;
	__u32 v4_mask;  // network order, applied to sources for rate limiting
	__u32 flags;    // enum config_flag
	__u32 v6_mask[4];
	__u64 autoblock_ttl_ns;
	__u64 unused;   // was the injected clock, now in clock_sync; kept for the layout
	struct bucket rate[CLASS_MAX];
};

struct entry {
	__u64 expires_ns; // CLOCK_BOOTTIME ns; 0 = permanent
	__u64 hits;
	__u32 rule_id;
	// prefixlen is a prefix entry's own length (0 in exact maps), as its
	// key holds it. It fills what was padding, so pinned maps of the
	// earlier layout are adopted as they are (the loader writes it into
	// their entries).
	__u32 prefixlen;
};

// The prefix maps' keys (the layout of the LPM trie keys they replaced): the
// length, then the address masked to it.
struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u32 addr[4];
};

struct addr6 {
	__u32 addr[4];
};

struct class_state {
	__u64 tat;       // GCRA theoretical arrival time
	__u64 win_start; // start of the one-second window counting arrivals
	__u64 win_pkts;
};

struct source_state {
	__u64 blocked_until;
	struct class_state cls[CLASS_MAX];
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct autoblock_event {
	__u32 addr[4]; // IPv4 sources as ::ffff:a.b.c.d
	__u64 until_ns;
	__u64 window_pkts;
	__u8 class;
	__u8 monitor;
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

// counters are indexed by reason, plus REASON_MAX in monitor mode for what
// would have been dropped.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

// LIST_MAP is a list's map: exact addresses keyed by address, prefixes by
// length and masked address.
#define LIST_MAP(name, keytype, size)                  \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_HASH);       \
		__uint(max_entries, size);             \
		__type(key, keytype);                  \
		__type(value, struct entry);           \
		__uint(map_flags, BPF_F_NO_PREALLOC);  \
		__uint(pinning, LIBBPF_PIN_BY_NAME);   \
	} name SEC(".maps")

LIST_MAP(allow_v4, __u32, ALLOW_CEILING);
LIST_MAP(allow_v6, struct addr6, ALLOW_CEILING);
LIST_MAP(allow_v4_lpm, struct lpm_v4_key, ALLOW_CEILING);
LIST_MAP(allow_v6_lpm, struct lpm_v6_key, ALLOW_CEILING);
LIST_MAP(block_v4, __u32, BLOCK_V4_CEILING);
LIST_MAP(block_v6, struct addr6, BLOCK_V6_CEILING);
LIST_MAP(block_v4_lpm, struct lpm_v4_key, BLOCK_V4_CEILING);
LIST_MAP(block_v6_lpm, struct lpm_v6_key, BLOCK_V6_CEILING);

// prefix_lens_v4 holds, per list (allow, block) and per /16 of IPv4 space,
// the prefix lengths present: bit 31 - l of a /16's mask is set while the
// list holds a prefix of length l (0 to 31; /32s are exact entries) covering
// some address of that /16, so the lowest set bit is the longest length.
// Sixteen /16s to a 64-byte value. prefix_lens_v6 does the same for IPv6
// over 2^16 buckets, a hash of an address's top 32 bits (a prefix shorter
// than /32 sets its length in the bucket of every /32 it covers, all of them
// below /16), with two 64-bit masks a bucket: bit 127 - l of the first for
// lengths 64 to 127, bit 63 - l of the second for 0 to 63; four buckets to a
// value. A set bit may be a hash collision's; a clear one proves
// no prefix of that length covers the source. The daemon sets a bit before
// the first prefix of its length goes in and clears it after the last has
// gone, so no prefix is ever hidden from the data path.
#define PLENS4_PER_VALUE 16
#define PLENS4_VALUES    ((1 << 16) / PLENS4_PER_VALUE)
#define PLENS6_LOG       16
#define PLENS6_PER_VALUE 4
#define PLENS6_VALUES    ((1 << PLENS6_LOG) / PLENS6_PER_VALUE)

struct plens4 {
	__u32 mask[PLENS4_PER_VALUE];
};

struct plens6 {
	__u64 mask[2 * PLENS6_PER_VALUE]; // bucket b: mask[2b] lengths 64-127, mask[2b+1] 0-63
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PLENS4_VALUES);
	__type(key, __u32);
	__type(value, struct plens4);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefix_lens_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PLENS6_VALUES);
	__type(key, __u32);
	__type(value, struct plens6);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefix_lens_v6 SEC(".maps");

// management holds the management prefixes (admin.management_addrs) in the
// sources map's key space (IPv4 as ::ffff:a.b.c.d/96+len), each shortened by
// userspace to at most the sources' prefix length, so that a sources key
// matches exactly when its block would cover a management address. Such a
// source is rate limited but never blocked automatically: a spoofed flood
// must not lock the operator out. It is read only when a source crosses the
// automatic-block threshold.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * MGMT_CEILING);
	__type(key, struct lpm_v6_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} management SEC(".maps");

// sources holds rate-limit and automatic-block state per source prefix in a
// set-associative table: SOURCE_BUCKETS buckets of SOURCE_WAYS ways, each
// way a source's key (its tag) and state. An array, so its lookup is inlined
// (a hash or LRU lookup is a kernel call, about 33 ns here). A source's
// bucket is fixed by a hash of its key; a source not found takes the way of
// its bucket with the oldest state (source_age), so a spoofed flood evicts
// within a bucket only, and an automatic block whose end lies ahead outlives
// limiter state: a live block is evicted only when a new source arrives and
// the bucket's other ways all hold live blocks or limiter states reaching
// past its end (a bucket's time runs at most its burst ahead), and then the
// block that ends first goes. A new source is always limited: blocks never
// buy a bucket-mate an unlimited pass. A way whose tag and state are zero is free: a zero state is
// the same as no history, so the key :: reading it is harmless.
//
// Concurrency (the table is shared by all CPUs): a way has two counters,
// begin and end. A writer that saw begin == end == seen increments begin
// (XADD, which every kernel supports; cmpxchg needs 5.12) and holds the way
// only if begin is then exactly seen + 1 and end still seen (way_lock); else
// it takes its increment back and leaves without writing. Of two writers at
// once at most one succeeds, so writes to a way never interleave. The holder
// releases the way by storing end = seen + 1: begin == end means no writer is
// inside. A reader reads end, begin,
// the tag and the state, then begin again (way_enter): equal counters before
// and an unchanged begin after mean no write overlapped, so the tag and the
// state it read belong together; any other read decides nothing. With loads
// done in order and XADD a full barrier (x86), a drop is thus never decided
// on a torn way or on another source's state. Userspace follows the same
// protocol through mmap (see sources_linux.go).
#define SOURCE_BUCKETS_LOG 14
#define SOURCE_BUCKETS     (1 << SOURCE_BUCKETS_LOG)
#define SOURCE_WAYS        4

struct source_way {
	__u64 begin; // writers that began writing this way
	__u64 end;   // writers that finished (or gave up)
	struct addr6 tag;
	struct source_state st;
};

struct source_bucket {
	struct source_way ways[SOURCE_WAYS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SOURCE_BUCKETS);
	__type(key, __u32);
	__type(value, struct source_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

// perf_events carries the same events on kernels without the ring buffer
// (before 5.8). The loader sets use_perf_events there and turns the unused
// events map into a plain array: the verifier only walks the branch the
// constant selects, so the ring buffer helpers are never checked.
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

volatile const __u32 use_perf_events = 0;

// use_monotonic_clock selects bpf_ktime_get_ns on kernels without
// bpf_ktime_get_boot_ns (before 5.8); userspace then converts expiries with
// CLOCK_MONOTONIC. The unused helper sits in a branch the verifier skips.
volatile const __u32 use_monotonic_clock = 0;

// The data path's clock is jiffies, scaled to nanoseconds on the line that
// clock_sync holds: reading CLOCK_BOOTTIME through its helper costs about as
// much as everything else the program does (45 ns a packet on a 2-vCPU VM),
// while the verifier inlines bpf_jiffies64 into one load. Userspace finds a
// tick edge with aegis_clock_probe and writes base_jiffies, the CLOCK_BOOTTIME
// (or CLOCK_MONOTONIC) time of its start, and the tick length; the estimate
// then trails the precise clock by less than one tick. base_ns = 0 (not yet
// calibrated) and use_jiffies_clock = 0 (kernels before 5.5, which lack the
// helper) select the precise helper.
volatile const __u32 use_jiffies_clock = 1;

struct clock_sync {
	__u64 base_ns;
	__u64 base_jiffies;
	__u64 tick_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_sync);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} clock SEC(".maps");

// prefilters holds one bitmap per IPv4 prefix trie (allow, block): bit b is
// set when some prefix in the trie covers an address of bucket b, the top 16
// address bits. A clear bit proves no prefix can match, so the trie lookup —
// the costliest step on the pass path — is skipped. The IPv6 tries have
// theirs in prefilters_v6 and prefilters_long; prefilter_index numbers all
// four tries, as exact_filters does.
#define PREFILTER_BITS  (1 << 16)
#define PREFILTER_WORDS (PREFILTER_BITS / 64)

enum prefilter_index {
	PREFILTER_ALLOW_V4 = 0,
	PREFILTER_BLOCK_V4 = 1,
	PREFILTER_ALLOW_V6 = 2,
	PREFILTER_BLOCK_V6 = 3,
	PREFILTER_MAX = 4,
};

struct prefilter {
	__u64 words[PREFILTER_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PREFILTER_ALLOW_V6); // the IPv4 tries only
	__type(key, __u32);
	__type(value, struct prefilter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefilters SEC(".maps");

// prefilters_v6 are the IPv6 tries' bitmaps for prefixes shorter than /48
// (allow, block), with 2^20 buckets: a hash of the top 32 bits. With thousands of /32s holding prefixes, 16 bits left a clean /32
// sharing a bucket with one of them about one time in fifteen.
#define PREFILTER6_LOG   20
#define PREFILTER6_WORDS ((1 << PREFILTER6_LOG) / 64)

struct prefilter6 {
	__u64 words[PREFILTER6_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct prefilter6);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefilters_v6 SEC(".maps");

// prefilters_long refine the IPv6 prefilters for prefixes of /48 and longer
// (allow, block): bit b is set when such a prefix's top 48 bits hash to b.
// Prefixes shorter than /48 stay in prefilters, so a source whose /32 holds
// only long prefixes (blocked /48s inside an ISP's /32) skips the trie unless
// its own /48 is one of them.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct prefilter6);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefilters_long SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; // fragment header only
};

// Force bpf2go to emit Go types for structs only userspace reads.
const struct autoblock_event *unused_event __attribute__((unused));
const struct lpm_v4_key *unused_lpm4 __attribute__((unused));
const struct lpm_v6_key *unused_lpm6 __attribute__((unused));
const enum presence_flag *unused_presence __attribute__((unused));
const enum verdict_reason *unused_reason __attribute__((unused));
const enum rate_class *unused_class __attribute__((unused));
const struct source_state *unused_source __attribute__((unused));
const struct source_bucket *unused_bucket __attribute__((unused));
const struct exact4_bucket *unused_exact4 __attribute__((unused));
const struct exact6_bucket *unused_exact6 __attribute__((unused));
const struct exact_slot *unused_slot __attribute__((unused));
const struct prefix_bucket *unused_prefix_bucket __attribute__((unused));

static __always_inline __u64 precise_ns(void)
{
	return use_monotonic_clock ? bpf_ktime_get_ns() : bpf_ktime_get_boot_ns();
}

// clock_now returns the data path's time: on the line when one is written
// (tick_ns = 0 freezes it at base_ns: tests inject time so), else from the
// precise helper. One branch, which the verifier's pruning handles well; a
// separate branch for injected time made it walk twice the states.
static __always_inline __u64 clock_now(void)
{
	__u32 zero = 0;
	struct clock_sync *c = bpf_map_lookup_elem(&clock, &zero);
	if (c && c->base_ns)
		return c->base_ns +
		       (use_jiffies_clock ? (bpf_jiffies64() - c->base_jiffies) * c->tick_ns : 0);
	return precise_ns();
}

// clock_slack is how far clock_now may trail the precise clock: one tick
// with the jiffies clock, else 0. It is read where it is used, at the end
// of the limiter's path.
static __always_inline __u64 clock_slack(void)
{
	__u32 zero = 0;
	struct clock_sync *c = bpf_map_lookup_elem(&clock, &zero);
	return c && c->base_ns ? c->tick_ns : 0;
}

static __always_inline int verdict(const struct shield_config *cfg, __u32 reason, __u64 len)
{
	int drop = reason < REASON_MAX && ((DROP_REASONS >> reason) & 1);
	__u32 idx = reason;

	if (drop && cfg->mode == MODE_MONITOR) {
		idx += REASON_MAX;
		drop = 0;
	}
	struct counter *c = bpf_map_lookup_elem(&counters, &idx);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
	return drop ? XDP_DROP : XDP_PASS;
}

// exact_filters holds one bitmap of 2^22 bits per exact-address map (the
// same order as prefilters), in blocks of 32768 bits: bit h is set when some
// listed address hashes to h. A clear bit proves the address is not listed,
// so the data path skips the hash map lookup, which costs a miss in a table
// of up to a million entries on every clean packet.
#define EXACT_FILTER_LOG   22
#define EXACT_BLOCK_WORDS  512
#define EXACT_BLOCKS       (1 << (EXACT_FILTER_LOG - 15))

struct exact_block {
	__u64 words[EXACT_BLOCK_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PREFILTER_MAX * EXACT_BLOCKS);
	__type(key, __u32);
	__type(value, struct exact_block);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exact_filters SEC(".maps");

// The hashes multiply the address as the packet holds it (network byte
// order loaded as a host word); userspace computes the same.
static __always_inline __u32 exact_hash_v4(__u32 addr)
{
	return (addr * 0x9E3779B1u) >> (32 - EXACT_FILTER_LOG);
}

static __always_inline __u32 exact_hash_v6(const struct addr6 *a)
{
	__u32 x = a->addr[0] * 0x85EBCA77u + a->addr[1] * 0xC2B2AE3Du + a->addr[2] * 0x27D4EB2Fu +
		  a->addr[3] * 0x165667B1u;
	return (x * 0x9E3779B1u) >> (32 - EXACT_FILTER_LOG);
}

#define READ_ONCE64(x) (*(volatile __u64 *)&(x))
#define barrier()      asm volatile("" ::: "memory")

// The exact tables: a list's exact addresses in an array the verifier
// inlines, where a hash map lookup is a kernel call (7-8 ns of a 17 ns drop
// here). An address may sit in any of the 4 ways of 2 buckets, one picked
// by each of two hashes; userspace places it (the address is in at most one
// way, or in the list's hash map when all 8 were taken) and the data path
// reads both buckets. Each list has its own range of buckets; the masks are
// load-time constants (tests shrink them to fill a bucket).
//
// A way's state is a generation (bits 1-31) and a valid bit (bit 0).
// Userspace (through mmap, see exacttable_linux.go) writes a free way's
// address and expiry, then its state, valid with the next generation;
// removes it by storing the next generation, not valid; changes a held
// entry's expiry alone in place (one 8-byte store). The data path reads the
// state, the address and the expiry, then the state again: the same valid
// state on both sides means the address and expiry read belong together,
// since a way's address changes only while it is not valid. A changed state
// means the way was freed (and perhaps taken again) during the read: it
// is passed over, and the other ways are read. An address stays in its way
// until it is removed; nothing moves it.
#define EXACT_WAYS         4
#define EXACT4_ALLOW_LOG   13
#define EXACT4_BLOCK_LOG   17
#define EXACT6_ALLOW_LOG   13
#define EXACT6_BLOCK_LOG   16
#define EXACT4_BUCKETS     ((1 << EXACT4_ALLOW_LOG) + (1 << EXACT4_BLOCK_LOG))
#define EXACT6_BUCKETS     ((1 << EXACT6_ALLOW_LOG) + (1 << EXACT6_BLOCK_LOG))

struct exact4_way {
	__u32 addr;
	__u32 state;
	__u64 expires_ns; // CLOCK_BOOTTIME ns; 0 = permanent
};

struct exact4_bucket {
	struct exact4_way ways[EXACT_WAYS];
};

struct exact6_way {
	__u32 addr[4];
	__u32 state;
	__u32 unused;
	__u64 expires_ns;
};

struct exact6_bucket {
	struct exact6_way ways[EXACT_WAYS];
};

// exact_slot is a way's hit counter and rule id, apart from the ways so a
// bucket stays within one (IPv4) or two (IPv6) cache lines: IPv4 ways
// first, then IPv6.
struct exact_slot {
	__u64 hits;
	__u32 rule_id;
	__u32 unused;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXACT4_BUCKETS);
	__type(key, __u32);
	__type(value, struct exact4_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exact_table_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXACT6_BUCKETS);
	__type(key, __u32);
	__type(value, struct exact6_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exact_table_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXACT_WAYS * (EXACT4_BUCKETS + EXACT6_BUCKETS));
	__type(key, __u32);
	__type(value, struct exact_slot);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} exact_slots SEC(".maps");

// The buckets a list may use: index (list 0 allow, 1 block) base + (hash >>
// shift & mask). Userspace may narrow the masks at load (tests).
volatile const __u32 exact4_mask[2] = {(1 << EXACT4_ALLOW_LOG) - 1, (1 << EXACT4_BLOCK_LOG) - 1};
volatile const __u32 exact6_mask[2] = {(1 << EXACT6_ALLOW_LOG) - 1, (1 << EXACT6_BLOCK_LOG) - 1};

#define EXACT4_SHIFT (32 - EXACT4_BLOCK_LOG)
#define EXACT6_SHIFT (32 - EXACT6_BLOCK_LOG)

// Outcomes of the exact tables' lookup.
enum exact_found {
	EXACT_ABSENT = 0, // not in the table (perhaps in the hash map)
	EXACT_LIVE = 1,   // held and not expired: counted
	EXACT_EXPIRED = 2 // held, expired: as if absent, and not in the hash map
};

#define READ_ONCE32(x) (*(volatile __u32 *)&(x))

static __always_inline __u32 exact4_bucket_of(__u32 list, __u32 h)
{
	return (list ? (1 << EXACT4_ALLOW_LOG) : 0) + ((h >> EXACT4_SHIFT) & exact4_mask[list & 1]);
}

static __always_inline __u32 exact6_bucket_of(__u32 list, __u32 h)
{
	return (list ? (1 << EXACT6_ALLOW_LOG) : 0) + ((h >> EXACT6_SHIFT) & exact6_mask[list & 1]);
}

// exact_hit counts a hit on a slot and reports whether the entry is live.
static __always_inline int exact_hit(__u32 slot, __u64 expires)
{
	if (expires != 0 && expires <= clock_now())
		return EXACT_EXPIRED;
	struct exact_slot *sl = bpf_map_lookup_elem(&exact_slots, &slot);
	if (sl)
		__sync_fetch_and_add(&sl->hits, 1);
	return EXACT_LIVE;
}

// exact_v4 looks addr up in list's two buckets, the second only if the
// first does not hold it. A way's address and state are one 8-byte word
// (one load); the word read again after the expiry tells the two belong
// together. A way whose word changed in between was freed or taken for
// another address during the read, and is passed over like a way holding
// another address: the rest of the ways are read all the same, since an
// IPv6 address read across two writes can look like one listed further
// on.
// way4_find returns the way of an IPv4 bucket that holds key, valid, read
// consistently (its expiry in *expires), or -1.
static __always_inline int way4_find(struct exact4_bucket *bk, __u32 key, __u64 *expires)
{
#pragma unroll
	for (int w = 0; w < EXACT_WAYS; w++) {
		struct exact4_way *way = &bk->ways[w];
		__u64 word = READ_ONCE64(*(__u64 *)way);
		if ((__u32)word != key || !((word >> 32) & 1))
			continue;
		*expires = READ_ONCE64(way->expires_ns);
		barrier();
		if (READ_ONCE64(*(__u64 *)way) != word)
			continue;
		return w;
	}
	return -1;
}

static __always_inline int exact_v4(__u32 list, __u32 addr)
{
	__u32 h = addr * 0x9E3779B1u;

#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 idx = exact4_bucket_of(list, h);
		struct exact4_bucket *bk = bpf_map_lookup_elem(&exact_table_v4, &idx);
		if (!bk)
			return EXACT_ABSENT;
		__u64 expires = 0;
		int w = way4_find(bk, addr, &expires);
		if (w >= 0)
			return exact_hit(idx * EXACT_WAYS + w, expires);
		h = addr * 0x85EBCA77u;
	}
	return EXACT_ABSENT;
}

static __always_inline int exact_v6(__u32 list, const struct addr6 *a)
{
	__u32 x = a->addr[0] * 0x85EBCA77u + a->addr[1] * 0xC2B2AE3Du + a->addr[2] * 0x27D4EB2Fu +
		  a->addr[3] * 0x165667B1u;
	__u32 h = x * 0x9E3779B1u;

#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 idx = exact6_bucket_of(list, h);
		struct exact6_bucket *bk = bpf_map_lookup_elem(&exact_table_v6, &idx);
		if (!bk)
			return EXACT_ABSENT;
#pragma unroll
		for (int w = 0; w < EXACT_WAYS; w++) {
			struct exact6_way *way = &bk->ways[w];
			__u32 st = READ_ONCE32(way->state);
			if (!(st & 1))
				continue;
			barrier();
			if (READ_ONCE32(way->addr[0]) != a->addr[0] || READ_ONCE32(way->addr[1]) != a->addr[1] ||
			    READ_ONCE32(way->addr[2]) != a->addr[2] || READ_ONCE32(way->addr[3]) != a->addr[3])
				continue;
			__u64 expires = READ_ONCE64(way->expires_ns);
			barrier();
			if (READ_ONCE32(way->state) != st)
				continue; // torn: not evidence either way
			return exact_hit(EXACT_WAYS * (EXACT4_BUCKETS + idx) + w, expires);
		}
		h = x * 0x85EBCA77u;
	}
	return EXACT_ABSENT;
}


// The prefix tables: each list's prefixes (lengths below the family's full
// one) in arrays as the exact tables hold addresses: 4-way buckets, a
// prefix in one of the 8 ways of its two buckets, or in the list's prefix
// hash map when all 8 were taken. Allowlist buckets first, then the
// blocklist's, in each family's table. An IPv4 prefix is one word, its
// address's leading bits (host order) followed by a 1 and zeros
// (prefix4_key): the length is where the last 1 is, so the way is an
// exact4 way, read with one load as an address is. An IPv6 way holds the
// masked address and the length, read as an exact6 way is.
#define PREFIX_ALLOW_LOG 11
#define PREFIX_BLOCK_LOG 14
#define PREFIX_BUCKETS   ((1 << PREFIX_ALLOW_LOG) + (1 << PREFIX_BLOCK_LOG))
#define PREFIX_SHIFT     (32 - PREFIX_BLOCK_LOG)

struct prefix_way {
	__u32 addr[4];
	__u32 state;
	__u32 plen;
	__u64 expires_ns;
};

struct prefix_bucket {
	struct prefix_way ways[EXACT_WAYS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PREFIX_BUCKETS);
	__type(key, __u32);
	__type(value, struct exact4_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefix_table_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PREFIX_BUCKETS);
	__type(key, __u32);
	__type(value, struct prefix_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefix_table_v6 SEC(".maps");

// prefix_slots: a way's hit counter and rule id, IPv4 ways first.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * EXACT_WAYS * PREFIX_BUCKETS);
	__type(key, __u32);
	__type(value, struct exact_slot);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} prefix_slots SEC(".maps");

// Bucket masks: IPv4 allow, block, IPv6 allow, block (tests narrow them).
volatile const __u32 prefix_mask[4] = {(1 << PREFIX_ALLOW_LOG) - 1, (1 << PREFIX_BLOCK_LOG) - 1,
				       (1 << PREFIX_ALLOW_LOG) - 1, (1 << PREFIX_BLOCK_LOG) - 1};

static __always_inline __u32 prefix_bucket_of(__u32 fam, __u32 list, __u32 h)
{
	return (list ? (1 << PREFIX_ALLOW_LOG) : 0) + ((h >> PREFIX_SHIFT) & prefix_mask[(2 * fam + list) & 3]);
}

// prefix_hit counts a hit on a prefix's slot and reports whether it is live.
static __always_inline int prefix_hit(__u32 slot, __u64 expires)
{
	if (expires != 0 && expires <= clock_now())
		return EXACT_EXPIRED;
	struct exact_slot *sl = bpf_map_lookup_elem(&prefix_slots, &slot);
	if (sl)
		__sync_fetch_and_add(&sl->hits, 1);
	return EXACT_LIVE;
}

// prefix4_key is an IPv4 prefix's key in its table: h is the address in
// host order, len below 32.
static __always_inline __u32 prefix4_key(__u32 h, __u32 len)
{
	return (len ? h & (~0u << (32 - len)) : 0) | (1u << (31 - len));
}

// prefix4_in looks an IPv4 prefix's key up in list's buckets, as exact_v4
// does an address.
static __always_inline int prefix4_in(__u32 list, __u32 key)
{
	__u32 h = key * 0x9E3779B1u;

#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 idx = prefix_bucket_of(0, list, h);
		struct exact4_bucket *bk = bpf_map_lookup_elem(&prefix_table_v4, &idx);
		if (!bk)
			return EXACT_ABSENT;
		__u64 expires = 0;
		int w = way4_find(bk, key, &expires);
		if (w >= 0)
			return prefix_hit(idx * EXACT_WAYS + w, expires);
		h = key * 0x85EBCA77u;
	}
	return EXACT_ABSENT;
}

// prefix6_in looks a masked IPv6 prefix up in list's buckets, as exact_v6
// does an address, its length compared with the address.
static __always_inline int prefix6_in(__u32 list, __u32 plen, __u32 a0, __u32 a1, __u32 a2, __u32 a3)
{
	__u32 x = a0 * 0x85EBCA77u + a1 * 0xC2B2AE3Du + a2 * 0x27D4EB2Fu + a3 * 0x165667B1u +
		  plen * 0x61C88647u;
	__u32 h = x * 0x9E3779B1u;

#pragma unroll
	for (int c = 0; c < 2; c++) {
		__u32 idx = prefix_bucket_of(1, list, h);
		struct prefix_bucket *bk = bpf_map_lookup_elem(&prefix_table_v6, &idx);
		if (!bk)
			return EXACT_ABSENT;
#pragma unroll
		for (int w = 0; w < EXACT_WAYS; w++) {
			struct prefix_way *way = &bk->ways[w];
			__u32 st = READ_ONCE32(way->state);
			if (!(st & 1))
				continue;
			barrier();
			if (READ_ONCE32(way->plen) != plen || READ_ONCE32(way->addr[0]) != a0 ||
			    READ_ONCE32(way->addr[1]) != a1 || READ_ONCE32(way->addr[2]) != a2 ||
			    READ_ONCE32(way->addr[3]) != a3)
				continue;
			__u64 expires = READ_ONCE64(way->expires_ns);
			barrier();
			if (READ_ONCE32(way->state) != st)
				continue; // torn: not evidence either way
			return prefix_hit(EXACT_WAYS * (PREFIX_BUCKETS + idx) + w, expires);
		}
		h = x * 0x85EBCA77u;
	}
	return EXACT_ABSENT;
}

// PROBE_HASHED in a probe's which_len: the list's prefix hash map holds
// entries.
#define PROBE_HASHED (1 << 16)

static __always_inline int live(struct entry *e, __u64 now);

// prefix4_has reports whether list's prefix of length len (key, its
// prefix4_key; addr, its masked address as the packet holds it) is held
// and live: in the table, else, when hashed, in the prefix hash map. An
// entry is in one of the two, so one the table holds expired is not looked
// for in the map.
static __always_inline int prefix4_has(__u32 which, __u32 hashed, __u32 len, __u32 key, __u32 addr)
{
	int found = prefix4_in(which, key);
	if (found != EXACT_ABSENT || !hashed)
		return found == EXACT_LIVE;
	struct lpm_v4_key k = {.prefixlen = len, .addr = addr};
	struct entry *e = which ? bpf_map_lookup_elem(&block_v4_lpm, &k) : bpf_map_lookup_elem(&allow_v4_lpm, &k);
	return e && live(e, clock_now());
}

// prefix4_probe is prefix4_has for a list (0 allow, 1 block) in bit 8 of
// which_len, PROBE_HASHED and the length below: a global function as
// prefix6_probe is.
__attribute__((noinline)) int prefix4_probe(__u32 which_len, __u32 key, __u32 addr)
{
	return prefix4_has((which_len >> 8) & 1, which_len & PROBE_HASHED, which_len & 0xff, key, addr);
}

// prefix6_has is prefix4_has for IPv6.
static __always_inline int prefix6_has(__u32 which, __u32 hashed, __u32 len, __u32 a0, __u32 a1, __u32 a2,
				       __u32 a3)
{
	int found = prefix6_in(which, len, a0, a1, a2, a3);
	if (found != EXACT_ABSENT || !hashed)
		return found == EXACT_LIVE;
	struct lpm_v6_key k = {.prefixlen = len, .addr = {a0, a1, a2, a3}};
	struct entry *e = which ? bpf_map_lookup_elem(&block_v6_lpm, &k) : bpf_map_lookup_elem(&allow_v6_lpm, &k);
	return e && live(e, clock_now());
}

// prefix6_probe is prefix6_has for a list (0 allow, 1 block) in bit 8 of
// which_len, PROBE_HASHED and the length below. A global function, as
// prefix_match is: the verifier checks its probe once, not at every length
// of the loops that call it (inlined there, it walked past a million
// instructions), and the loops see one outcome of two.
__attribute__((noinline)) int prefix6_probe(__u32 which_len, __u32 a0, __u32 a1, __u32 a2, __u32 a3)
{
	return prefix6_has((which_len >> 8) & 1, which_len & PROBE_HASHED, which_len & 0xff, a0, a1, a2, a3);
}

// autoblock_marks lets a packet of a class without a rate limit (TCP other
// than a bare SYN, protocols other than TCP/UDP/ICMP) skip the sources
// lookup, which costs as much as the rest of its path: entry h is 1 when a
// source whose key hashes to h may be blocked automatically. The data path
// writes blocked_until, then the mark (a plain store), and marks again when
// a packet of a blocked source finds its mark clear; userspace clears only
// marks no active block needs and then re-marks every source still blocked,
// so a block is not left unmarked (see refreshMarks).
#define MARK_LOG 16

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << MARK_LOG);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} autoblock_marks SEC(".maps");

static __always_inline int exact_may_match(__u32 which, __u32 h)
{
	__u32 key = which * EXACT_BLOCKS + (h >> 15);
	struct exact_block *b = bpf_map_lookup_elem(&exact_filters, &key);
	if (!b)
		return 1;
	return (b->words[(h >> 6) & (EXACT_BLOCK_WORDS - 1)] >> (h & 63)) & 1;
}

// source_mark is the autoblock_marks entry of a sources-map key.
static __always_inline __u32 source_mark(const struct addr6 *src)
{
	return exact_hash_v6(src) >> (EXACT_FILTER_LOG - MARK_LOG);
}

// set_mark marks a source as blocked automatically, unless it is marked.
static __always_inline void set_mark(const struct addr6 *src)
{
	__u32 mark = source_mark(src);
	__u32 *marked = bpf_map_lookup_elem(&autoblock_marks, &mark);
	if (marked && !*marked)
		*marked = 1;
}

static __always_inline int may_match(__u32 which, __u32 bucket)
{
	struct prefilter *f = bpf_map_lookup_elem(&prefilters, &which);
	if (!f)
		return 1;
	return (f->words[(bucket >> 6) & (PREFILTER_WORDS - 1)] >> (bucket & 63)) & 1;
}

static __always_inline int may_match_long(__u32 which, const struct addr6 *a)
{
	__u32 w0 = bpf_ntohl(a->addr[0]), w1 = bpf_ntohl(a->addr[1]) >> 16;
	__u32 b = ((w0 * 0x9E3779B1u) ^ (w1 * 0x85EBCA77u)) >> (32 - PREFILTER6_LOG);
	__u32 key = which - PREFILTER_ALLOW_V6;
	struct prefilter6 *f = bpf_map_lookup_elem(&prefilters_long, &key);
	if (!f)
		return 1;
	return (f->words[(b >> 6) & (PREFILTER6_WORDS - 1)] >> (b & 63)) & 1;
}

static __always_inline __u32 bucket_v6(__u32 first_word)
{
	return (bpf_ntohl(first_word) * 0x9E3779B1u) >> (32 - PREFILTER6_LOG);
}

static __always_inline int may_match_v6(__u32 which, __u32 bucket)
{
	__u32 key = which - PREFILTER_ALLOW_V6;
	struct prefilter6 *f = bpf_map_lookup_elem(&prefilters_v6, &key);
	if (!f)
		return 1;
	return (f->words[(bucket >> 6) & (PREFILTER6_WORDS - 1)] >> (bucket & 63)) & 1;
}

static __always_inline int live(struct entry *e, __u64 now)
{
	if (e->expires_ns != 0 && e->expires_ns <= now)
		return 0;
	__sync_fetch_and_add(&e->hits, 1);
	return 1;
}

// low_bit is the index of the lowest set bit of x (x != 0): the bits
// below it counted without a branch. The BPF instruction set has no
// bit-scan, and a branch per bit would split the verifier's walk of the
// loops below at every length.
static __always_inline __u32 low_bit(__u64 x)
{
	__u64 v = (x & -x) - 1;
	v = v - ((v >> 1) & 0x5555555555555555ull);
	v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (v * 0x0101010101010101ull) >> 56;
}

// first_bits is a mask of the first n bits (n < 64) of a 64-bit value
// held in network order as two 32-bit words: hi is the first word's.
static __always_inline void first_bits(__u32 n, __u32 *hi, __u32 *lo)
{
	__u64 m = ((1ull << n) - 1) << (64 - n);
	*hi = bpf_htonl(m >> 32);
	*lo = bpf_htonl((__u32)m);
}

// prefix_v4 reports whether a live prefix of the list (which: 0 allow, 1
// block) covers addr, counting the hit on the longest one. It looks up the
// lengths its /16 has, longest first, each in the prefix table and, when
// the table does not hold it and hashed says the list's prefix hash map
// holds entries, in that map; an expired entry is as if absent, so the next
// length decides. Each length is tried once: at most 32 lookups, paid only
// by a source whose /16 holds that many lengths.
static __always_inline int prefix_v4(__u32 which, __u32 addr, __u32 hashed)
{
	__u32 b = bpf_ntohl(addr) >> 16;
	__u32 key = which * PLENS4_VALUES + b / PLENS4_PER_VALUE;
	struct plens4 *pl = bpf_map_lookup_elem(&prefix_lens_v4, &key);
	if (!pl)
		return 0;
	__u64 mask = pl->mask[b % PLENS4_PER_VALUE];
	__u32 host = bpf_ntohl(addr);
	__u32 probe = which << 8 | (hashed ? PROBE_HASHED : 0);

	// The longest length is looked up inline (most /16s hold one length),
	// the others through the global prefix4_probe: inlined in the loop,
	// the probe's branches took the verifier past a million
	// instructions. The verifier knows i, so it walks the inline probe
	// once.
#pragma clang loop unroll(disable)
	for (int i = 0; i < 32 && mask; i++) {
		__u32 len = 31 - low_bit(mask);
		mask &= mask - 1;
		__u32 hi, lo;
		first_bits(len + 32, &hi, &lo);
		if (i == 0 ? prefix4_has(which, hashed, len, prefix4_key(host, len), addr & lo)
			   : prefix4_probe(probe | len, prefix4_key(host, len), addr & lo))
			return 1;
	}
	return 0;
}

// prefix_v6 is prefix_v4 for IPv6: the lengths of 64 and longer first,
// then the shorter ones, at most 128 lookups.
static __always_inline int prefix_v6(__u32 which, const struct addr6 *a, __u32 hashed)
{
	__u32 b = (bpf_ntohl(a->addr[0]) * 0x9E3779B1u) >> (32 - PLENS6_LOG);
	__u32 key = which * PLENS6_VALUES + b / PLENS6_PER_VALUE;
	struct plens6 *pl = bpf_map_lookup_elem(&prefix_lens_v6, &key);
	if (!pl)
		return 0;
	__u64 mask = pl->mask[2 * (b % PLENS6_PER_VALUE)];
	__u32 probe = which << 8 | (hashed ? PROBE_HASHED : 0);
	__u32 hi, lo;

#pragma clang loop unroll(disable)
	for (int i = 0; i < 64 && mask; i++) {
		__u32 len = 63 - low_bit(mask);
		mask &= mask - 1;
		first_bits(len, &hi, &lo);
		if (prefix6_probe(probe | (64 + len), a->addr[0], a->addr[1], a->addr[2] & hi, a->addr[3] & lo))
			return 1;
	}
	mask = pl->mask[2 * (b % PLENS6_PER_VALUE) + 1];
	// The shorter lengths' first is looked up inline, as in prefix_v4
	// (peeling the longer ones' too took the verifier past its limit).
#pragma clang loop unroll(disable)
	for (int i = 0; i < 64 && mask; i++) {
		__u32 len = 63 - low_bit(mask);
		mask &= mask - 1;
		first_bits(len, &hi, &lo);
		if (i == 0 ? prefix6_has(which, hashed, len, a->addr[0] & hi, a->addr[1] & lo, 0, 0)
			   : prefix6_probe(probe | len, a->addr[0] & hi, a->addr[1] & lo, 0, 0))
			return 1;
	}
	return 0;
}

// prefix_match is the prefix lookup of list (0 allow, 1 block; 2 and 3 the
// same for IPv6) for a source, a4[0] alone for IPv4. A global function: the
// verifier checks it once, on its own, where inlined it would walk its
// loops again for every state the parser can reach them in (Linux 5.6).
// It reads whether the list's prefix hash map holds entries itself: a
// branch for it at the call doubled the main program's walk after it.
__attribute__((noinline)) int prefix_match(__u32 list, __u32 a0, __u32 a1, __u32 a2, __u32 a3)
{
	__u32 zero = 0;
	struct shield_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u32 presence = cfg ? cfg->presence : ~0u;
	__u32 hashed;
	switch (list) {
	case PREFILTER_ALLOW_V4:
		hashed = presence & HAS_ALLOW_V4_PREFIX_HASH;
		break;
	case PREFILTER_BLOCK_V4:
		hashed = presence & HAS_BLOCK_V4_PREFIX_HASH;
		break;
	case PREFILTER_ALLOW_V6:
		hashed = presence & HAS_ALLOW_V6_PREFIX_HASH;
		break;
	default:
		hashed = presence & HAS_BLOCK_V6_PREFIX_HASH;
	}
	if (list == PREFILTER_ALLOW_V4)
		return prefix_v4(0, a0, hashed);
	if (list == PREFILTER_BLOCK_V4)
		return prefix_v4(1, a0, hashed);
	struct addr6 a = {.addr = {a0, a1, a2, a3}};
	if (list == PREFILTER_ALLOW_V6)
		return prefix_v6(0, &a, hashed);
	if (list == PREFILTER_BLOCK_V6)
		return prefix_v6(1, &a, hashed);
	return 0;
}

// list_v4 returns REASON_PASSED when no live entry matches, else hit_exact or
// hit_prefix.
static __always_inline __u32 list_v4(void *exact, __u32 filter, __u32 presence,
				     __u32 has_exact, __u32 has_hash, __u32 has_prefix, __u32 addr,
				     __u32 hit_exact, __u32 hit_prefix)
{
	struct entry *e;

	if ((presence & has_exact) && exact_may_match(filter, exact_hash_v4(addr))) {
		int found = exact_v4(filter, addr);
		if (found == EXACT_LIVE)
			return hit_exact;
		if (found == EXACT_ABSENT && (presence & has_hash)) {
			e = bpf_map_lookup_elem(exact, &addr);
			if (e && live(e, clock_now()))
				return hit_exact;
		}
	}
	if ((presence & has_prefix) && may_match(filter, bpf_ntohl(addr) >> 16)) {
		if (prefix_match(filter, addr, 0, 0, 0))
			return hit_prefix;
	}
	return REASON_PASSED;
}

static __always_inline __u32 list_v6(void *exact, __u32 filter, __u32 presence,
				     __u32 has_exact, __u32 has_hash, __u32 has_prefix, const struct addr6 *addr,
				     __u32 hit_exact, __u32 hit_prefix)
{
	struct entry *e;

	if ((presence & has_exact) && exact_may_match(filter, exact_hash_v6(addr))) {
		int found = exact_v6(filter - PREFILTER_ALLOW_V6, addr);
		if (found == EXACT_LIVE)
			return hit_exact;
		if (found == EXACT_ABSENT && (presence & has_hash)) {
			e = bpf_map_lookup_elem(exact, addr);
			if (e && live(e, clock_now()))
				return hit_exact;
		}
	}
	if ((presence & has_prefix) &&
	    (may_match_v6(filter, bucket_v6(addr->addr[0])) || may_match_long(filter, addr))) {
		if (prefix_match(filter, addr->addr[0], addr->addr[1], addr->addr[2], addr->addr[3]))
			return hit_prefix;
	}
	return REASON_PASSED;
}

static __always_inline void report_autoblock(struct xdp_md *ctx, const struct addr6 *src,
					     __u8 class, __u64 until, __u64 pkts, __u32 mode)
{
	if (use_perf_events) {
		struct autoblock_event pe = {
			.until_ns = until,
			.window_pkts = pkts,
			.class = class,
			.monitor = mode == MODE_MONITOR,
		};
		__builtin_memcpy(pe.addr, src->addr, sizeof(pe.addr));
		bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &pe, sizeof(pe));
		return;
	}
	struct autoblock_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return; // ring full: the block still holds; userspace sees it in the map
	__builtin_memcpy(ev->addr, src->addr, sizeof(ev->addr));
	ev->until_ns = until;
	ev->window_pkts = pkts;
	ev->class = class;
	ev->monitor = mode == MODE_MONITOR;
	__builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
	bpf_ringbuf_submit(ev, 0);
}

// is_management reports whether a sources key overlaps a management prefix.
static __always_inline int is_management(const struct addr6 *src)
{
	struct lpm_v6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, src->addr, sizeof(k.addr));
	return bpf_map_lookup_elem(&management, &k) != 0;
}


// source_bucket_of is the sources index of a key: the top bits of the same
// hash as source_mark's (the low bits of a multiplicative hash ignore the
// top bits of its input, an IPv4 address's last byte here).
static __always_inline __u32 source_bucket_of(const struct addr6 *src)
{
	return exact_hash_v6(src) >> (EXACT_FILTER_LOG - SOURCE_BUCKETS_LOG);
}

static __always_inline int tag_is(const struct source_way *w, const struct addr6 *src)
{
	return w->tag.addr[0] == src->addr[0] && w->tag.addr[1] == src->addr[1] &&
	       w->tag.addr[2] == src->addr[2] && w->tag.addr[3] == src->addr[3];
}

// source_age is how recent a way's state is: the latest of its block's end
// and its classes' times. The way with the lowest age is evicted.
static __always_inline __u64 source_age(const struct source_way *w)
{
	__u64 age = w->st.blocked_until;
#pragma unroll
	for (int c = 0; c < CLASS_MAX; c++) {
		__u64 t = w->st.cls[c].tat > w->st.cls[c].win_start ? w->st.cls[c].tat
								     : w->st.cls[c].win_start;
		age = t > age ? t : age;
	}
	return age;
}

// way_idle reads a way's counters: it returns 1, with the count in *seen,
// when no writer is inside.
static __always_inline int way_idle(struct source_way *w, __u64 *seen)
{
	__u64 e = READ_ONCE64(w->end);
	barrier();
	*seen = READ_ONCE64(w->begin);
	return *seen == e;
}

// way_lock takes a way found idle with begin == seen: it fails when any other
// writer began since, and then takes its increment back at once. What was
// read after seen is still what the way holds when it succeeds.
static __always_inline int way_lock(struct source_way *w, __u64 seen)
{
	__sync_fetch_and_add(&w->begin, 1);
	if (READ_ONCE64(w->begin) == seen + 1 && READ_ONCE64(w->end) == seen)
		return 1;
	__sync_fetch_and_add(&w->begin, -1);
	return 0;
}

// way_unlock releases a way taken with begin == seen: only its holder writes
// end, so a plain store (ordered after the state's on x86) does.
static __always_inline void way_unlock(struct source_way *w, __u64 seen)
{
	barrier();
	*(volatile __u64 *)&w->end = seen + 1;
}

// over_limit reports whether one more packet of the class would exceed its
// bucket.
static __always_inline int over_limit(const struct class_state *cs, const struct bucket *b,
				      __u64 now)
{
	__u64 tat = cs->tat > now ? cs->tat : now;
	return tat + b->interval_ns - now > b->tolerance_ns + clock_slack();
}

// Outcomes of way_enter and way_peek.
enum way_state {
	WAY_BUSY,    // another CPU was writing it
	WAY_OTHER,   // it holds another source
	WAY_BLOCKED, // the source's, blocked
	WAY_OPEN,    // the source's, not blocked (read only)
	WAY_LOCKED,  // the source's, not blocked, and now held
	WAY_OVER,    // the source's, its bucket full (way_peek)
};

// way_peek reads a way another CPU is writing: the read counts if the same
// writer held it throughout (both counters unchanged) and the tag is src's.
// A writer changes a way's tag only after writing a fresh or zero state
// there, so a way still tagged src holds src's state (perhaps half updated)
// or a fresh one: never another source's. cs is the class's state, or 0.
static __always_inline int way_peek(struct source_way *w, const struct addr6 *src, __u64 now,
				    const struct class_state *cs, const struct bucket *b)
{
	__u64 e = READ_ONCE64(w->end);
	barrier();
	__u64 seen = READ_ONCE64(w->begin);
	barrier();
	int mine = tag_is(w, src);
	__u64 until = READ_ONCE64(w->st.blocked_until);
	int over = cs && over_limit(cs, b, now);
	barrier();
	if (READ_ONCE64(w->begin) != seen || READ_ONCE64(w->end) != e)
		return WAY_BUSY;
	if (!mine)
		return WAY_OTHER;
	if (until > now)
		return WAY_BLOCKED;
	return over ? WAY_OVER : WAY_OPEN;
}

// way_enter reads whether a way holds src and blocks it, as one consistent
// read (no writer inside before it, none began during it), and with lock
// takes the way if it is src's and not blocked: what was read then stays
// true while it is held.
static __always_inline int way_enter(struct source_way *w, const struct addr6 *src, __u64 now,
				     int lock, __u64 *seen)
{
	if (!way_idle(w, seen))
		return WAY_BUSY;
	barrier();
	int mine = tag_is(w, src);
	__u64 until = READ_ONCE64(w->st.blocked_until);
	barrier();
	if (READ_ONCE64(w->begin) != *seen)
		return WAY_BUSY;
	if (!mine)
		return WAY_OTHER;
	if (until > now)
		return WAY_BLOCKED;
	if (!lock)
		return WAY_OPEN;
	return way_lock(w, *seen) ? WAY_LOCKED : WAY_BUSY;
}

// rate_limit applies the automatic block and the class's token bucket to the
// source; it returns REASON_PASSED when the packet may go on. Every read of a
// way that decides a drop is consistent (way_enter); a packet that finds its
// way being written three times over is judged on a read that no write
// began or ended during, or passes uncounted.
static __always_inline __u32 rate_limit(struct xdp_md *ctx, const struct shield_config *cfg,
					const struct addr6 *src, __u8 class)
{
	if (class >= CLASS_MAX) {
		__u32 mark = source_mark(src);
		__u32 *marked = bpf_map_lookup_elem(&autoblock_marks, &mark);
		if (marked && !*marked)
			return REASON_PASSED; // not limited, and no automatic block on it
	}

	// The time is read where it is first needed: a packet that passes
	// the lists and needs no limiter never reads it.
	__u64 now = clock_now();
	__u32 idx = source_bucket_of(src);
	struct source_bucket *bk = bpf_map_lookup_elem(&sources, &idx);
	if (!bk)
		return REASON_PASSED;

	const struct bucket *b = &cfg->rate[class < CLASS_MAX ? class : 0];
	int limited = class < CLASS_MAX && b->interval_ns != 0;

	struct source_way *w = 0;
#pragma unroll
	for (int i = 0; i < SOURCE_WAYS; i++) {
		if (tag_is(&bk->ways[i], src)) {
			w = &bk->ways[i];
			break;
		}
	}
	int state = WAY_OTHER;
	__u64 seen = 0;
	if (w) {
		state = way_enter(w, src, now, limited, &seen);
		if (state == WAY_BUSY)
			state = way_enter(w, src, now, limited, &seen);
		if (state == WAY_BUSY)
			state = way_enter(w, src, now, limited, &seen);
	}

	if (state == WAY_BUSY) {
		// Another CPU held the way at every try (the same source
		// flooding on two CPUs, most often): judge on what it holds
		// (way_peek). A packet that would pass goes uncounted.
		int seen_state = way_peek(w, src, now, limited ? &w->st.cls[class < CLASS_MAX ? class : 0] : 0, b);
		if (seen_state == WAY_BUSY)
			seen_state = way_peek(w, src, now, limited ? &w->st.cls[class < CLASS_MAX ? class : 0] : 0, b);
		if (seen_state == WAY_BUSY)
			seen_state = way_peek(w, src, now, limited ? &w->st.cls[class < CLASS_MAX ? class : 0] : 0, b);
		if (seen_state == WAY_OVER)
			return REASON_RATE_SYN + class;
		if (seen_state != WAY_BLOCKED)
			return REASON_PASSED;
		state = WAY_BLOCKED;
	}
	// The drop path of a blocked source only reads.
	if (state == WAY_BLOCKED) {
		set_mark(src);
		return REASON_AUTO_BLOCKED;
	}
	if (!limited)
		return REASON_PASSED;

	if (state != WAY_LOCKED) {
		// Not in the table: evict the oldest way of the bucket.
		struct source_way *v = &bk->ways[0];
		__u64 age = source_age(v);
#pragma unroll
		for (int i = 1; i < SOURCE_WAYS; i++) {
			__u64 a = source_age(&bk->ways[i]);
			if (a < age) {
				age = a;
				v = &bk->ways[i];
			}
		}
		// Its state must not have changed since it was chosen; if it
		// has, or another CPU is writing it, this first packet of the
		// source passes uncounted.
		if (!way_idle(v, &seen))
			return REASON_PASSED;
		barrier();
		if (source_age(v) != age || !way_lock(v, seen))
			return REASON_PASSED;
		__builtin_memset(&v->st, 0, sizeof(v->st));
		v->st.cls[class].tat = now + b->interval_ns;
		v->st.cls[class].win_start = now;
		v->st.cls[class].win_pkts = 1;
		barrier();
		__builtin_memcpy(&v->tag, src, sizeof(v->tag));
		way_unlock(v, seen);
		return REASON_PASSED;
	}

	struct class_state *cs = &w->st.cls[class];
	if (now - cs->win_start >= NSEC_PER_SEC) {
		cs->win_start = now;
		cs->win_pkts = 0;
	}
	cs->win_pkts++;
	if (b->autoblock_pkts && cs->win_pkts > b->autoblock_pkts && !is_management(src)) {
		__u64 until = now + cfg->autoblock_ttl_ns;
		__u64 pkts = cs->win_pkts;
		w->st.blocked_until = until;
		way_unlock(w, seen);
		// The block before its mark (way_unlock is a barrier). Stored
		// without reading it first: a stale 1 read here could miss
		// userspace clearing it at the same moment.
		__u32 mark = source_mark(src);
		__u32 *marked = bpf_map_lookup_elem(&autoblock_marks, &mark);
		if (marked)
			*marked = 1;
		report_autoblock(ctx, src, class, until, pkts, cfg->mode);
		return REASON_AUTO_BLOCKED;
	}

	__u64 tat = cs->tat > now ? cs->tat : now;
	tat += b->interval_ns;
	// A clock that trails by up to a tick (slack) would otherwise hold back
	// a tick's refill: the burst gets one tick's packets on top.
	if (tat - now > b->tolerance_ns + clock_slack()) {
		way_unlock(w, seen);
		return REASON_RATE_SYN + class;
	}
	cs->tat = tat;
	way_unlock(w, seen);
	return REASON_PASSED;
}

static __always_inline int is_ipv6_ext(__u8 proto)
{
	return proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_DSTOPTS ||
	       proto == IPPROTO_FRAGMENT || proto == IPPROTO_AH;
}

SEC("xdp")
int aegis_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	__u32 zero = 0;

#ifdef AEGIS_TEST_OOB_READ
	// Test fixture only (testdata/shield_oob.o): a read past the checked
	// bounds, which the kernel verifier must refuse.
	if (data + 14 > data_end)
		return XDP_PASS;
	if (*(volatile __u32 *)(data + 64) == 0)
		return XDP_DROP;
#endif

	struct shield_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return verdict(cfg, REASON_MALFORMED, len);
	__be16 proto = eth->h_proto;
	void *pos = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = pos;
		if ((void *)(vh + 1) > data_end)
			return verdict(cfg, REASON_MALFORMED, len);
		proto = vh->proto;
		pos = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return verdict(cfg, REASON_MALFORMED, len); // more tags than we walk

	struct addr6 src = {};
	__u8 l4proto;
	void *l4 = 0;      // nil when there is no L4 header to read (non-first fragment, ESP...)
	__u32 l4_end = 0;  // first fragments: offset from data where the datagram ends, as declared
	__u32 frag = FRAG_NONE;
	__u32 frag_units = 0; // fragment offset in 8-byte units
	__u32 reason;
	int unparsed = 0;
	int chain_long = 0;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pos;
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return verdict(cfg, REASON_MALFORMED, len);
		void *next = pos + ip->ihl * 4;
		if (next > data_end)
			return verdict(cfg, REASON_MALFORMED, len);
		// The lists need only the source: they are read before the
		// fragment fields are, as for IPv6 below.
		__u32 saddr = ip->saddr;

		reason = list_v4(&allow_v4, PREFILTER_ALLOW_V4, cfg->presence, HAS_ALLOW_V4,
				 HAS_ALLOW_V4_HASH, HAS_ALLOW_V4_PREFIX, saddr, REASON_ALLOWLISTED,
				 REASON_ALLOWLISTED);
		if (reason != REASON_PASSED)
			return verdict(cfg, reason, len);
		reason = list_v4(&block_v4, PREFILTER_BLOCK_V4, cfg->presence, HAS_BLOCK_V4,
				 HAS_BLOCK_V4_HASH, HAS_BLOCK_V4_PREFIX, saddr, REASON_BLOCKED_EXACT,
				 REASON_BLOCKED_PREFIX);
		if (reason != REASON_PASSED)
			return verdict(cfg, reason, len);
		l4proto = ip->protocol;
		__u16 fo = bpf_ntohs(ip->frag_off);
		frag_units = fo & 0x1fff;
		if (frag_units) {
			frag = FRAG_LATER;
		} else {
			l4 = next;
			if (fo & 0x2000) {
				frag = FRAG_FIRST;
				l4_end = (pos - data) + bpf_ntohs(ip->tot_len);
			}
		}
		src.addr[2] = bpf_htonl(0xffff);
		src.addr[3] = saddr & cfg->v4_mask;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pos;
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return verdict(cfg, REASON_MALFORMED, len);
		// The lists need only the source, so they are read before the
		// extension headers are walked: no verdict comes from that walk,
		// and each way through it is a state the verifier would otherwise
		// carry through both lists (their walk went from 677,000
		// instructions to 269,000 with this order).
		__builtin_memcpy(src.addr, ip6->saddr.in6_u.u6_addr32, sizeof(src.addr));
		reason = list_v6(&allow_v6, PREFILTER_ALLOW_V6, cfg->presence, HAS_ALLOW_V6,
				 HAS_ALLOW_V6_HASH, HAS_ALLOW_V6_PREFIX, &src, REASON_ALLOWLISTED,
				 REASON_ALLOWLISTED);
		if (reason != REASON_PASSED)
			return verdict(cfg, reason, len);
		reason = list_v6(&block_v6, PREFILTER_BLOCK_V6, cfg->presence, HAS_BLOCK_V6,
				 HAS_BLOCK_V6_HASH, HAS_BLOCK_V6_PREFIX, &src, REASON_BLOCKED_EXACT,
				 REASON_BLOCKED_PREFIX);
		if (reason != REASON_PASSED)
			return verdict(cfg, reason, len);
		l4proto = ip6->nexthdr;
		void *next = ip6 + 1;

#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			if (!is_ipv6_ext(l4proto))
				break;
			struct ipv6_ext *ext = next;
			if ((void *)(ext + 1) > data_end)
				break;
			if (l4proto == IPPROTO_FRAGMENT) {
				__u16 fo = bpf_ntohs(ext->frag_off);
				l4proto = ext->nexthdr;
				next += 8;
				if (fo >> 3) {
					// What follows is the middle of the datagram, not
					// headers: the next header names its protocol.
					frag = FRAG_LATER;
					frag_units = fo >> 3;
					break;
				}
				if (fo & 1) {
					__u16 plen = bpf_ntohs(ip6->payload_len);
					frag = FRAG_FIRST;
					l4_end = plen ? (__u32)(pos - data) + sizeof(*ip6) + plen : len; // 0: jumbogram
				}
				continue;
			}
			if (l4proto == IPPROTO_AH)
				next += (ext->hdrlen + 2) * 4;
			else
				next += (ext->hdrlen + 1) * 8;
			l4proto = ext->nexthdr;
		}
		if (frag != FRAG_LATER) {
			// A chain cut short leaves the L4 header unknown: it passes as
			// malformed, unless it is a first fragment, which must hold the
			// whole chain (RFC 7112). A chain that goes on past the headers
			// we walk is handled by the long_header_chains setting.
			int ext = is_ipv6_ext(l4proto);
			if (ext ? next + 4 > data_end : next > data_end) {
				unparsed = 1;
			} else if (ext) {
				chain_long = 1;
				unparsed = 1;
			} else {
				l4 = next;
			}
		}

		src.addr[0] &= cfg->v6_mask[0];
		src.addr[1] &= cfg->v6_mask[1];
		src.addr[2] &= cfg->v6_mask[2];
		src.addr[3] &= cfg->v6_mask[3];
	} else {
		return verdict(cfg, REASON_NON_IP, len);
	}

	// Every packet gets a class. A non-first fragment is charged to its
	// protocol's bucket (TCP's is the SYN bucket: legitimate TCP avoids
	// fragmentation); a TCP fragment at offset 1 can only rewrite the
	// flags of the first (RFC 3128) and is dropped. A first fragment must
	// hold what the limiter reads (for TCP the flags, RFC 1858), else it is
	// dropped. A long IPv6 header chain hides its protocol: dropped, or
	// charged to the SYN bucket.
	__u8 class = CLASS_NONE;
	int l4_ok = !unparsed;
	if (frag == FRAG_LATER) {
		if (l4proto == IPPROTO_TCP) {
			if (frag_units == 1)
				return verdict(cfg, REASON_FRAGMENT, len);
			class = CLASS_SYN;
		}
	} else if (chain_long) {
		if (!(cfg->flags & FLAG_CHARGE_LONG_CHAINS))
			return verdict(cfg, REASON_HEADER_CHAIN, len);
		class = CLASS_SYN;
	} else if (unparsed) {
		if (frag == FRAG_FIRST)
			return verdict(cfg, REASON_FRAGMENT, len);
	} else if (frag == FRAG_FIRST) {
		// What the limiter reads must lie within the frame and the
		// datagram both (a NIC pads a tiny fragment to 60 bytes); the
		// rest of the header may follow in the next fragment.
		long room = (long)(l4_end < len ? l4_end : len) - (long)(l4 - data);
		if (l4proto == IPPROTO_TCP) {
			struct tcphdr *tcp = l4;
			if (room < 14 || l4 + 14 > data_end)
				return verdict(cfg, REASON_FRAGMENT, len);
			if (tcp->syn && !tcp->ack)
				class = CLASS_SYN;
		} else if (l4proto == IPPROTO_UDP || l4proto == IPPROTO_ICMP ||
			   l4proto == IPPROTO_ICMPV6) {
			if (room < (l4proto == IPPROTO_UDP ? 8 : 4))
				return verdict(cfg, REASON_FRAGMENT, len);
		}
	} else if (l4proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			l4_ok = 0;
		else if (tcp->syn && !tcp->ack)
			class = CLASS_SYN;
	} else if (l4proto == IPPROTO_UDP) {
		if (l4 + 8 > data_end)
			l4_ok = 0;
	} else if (l4proto == IPPROTO_ICMP || l4proto == IPPROTO_ICMPV6) {
		if (l4 + 4 > data_end)
			l4_ok = 0;
	}
	if (l4proto == IPPROTO_UDP)
		class = CLASS_UDP;
	else if (l4proto == IPPROTO_ICMP || l4proto == IPPROTO_ICMPV6)
		class = CLASS_ICMP;

	reason = rate_limit(ctx, cfg, &src, class);
	if (reason != REASON_PASSED)
		return verdict(cfg, reason, len);
	return verdict(cfg, l4_ok ? REASON_PASSED : REASON_MALFORMED, len);
}

// aegis_clock_probe writes jiffies, the precise clock and jiffies again into
// the first 24 bytes of the frame it is run on (BPF_PROG_TEST_RUN): userspace
// calibrates clock_sync from runs whose two jiffies agree. It never runs on
// an interface.
SEC("xdp")
int aegis_clock_probe(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 v[3] = {};

	if (data + sizeof(v) > data_end)
		return XDP_ABORTED;
	if (use_jiffies_clock)
		v[0] = bpf_jiffies64();
	v[1] = precise_ns();
	if (use_jiffies_clock)
		v[2] = bpf_jiffies64();
	__builtin_memcpy(data, v, sizeof(v));
	return XDP_PASS;
}
