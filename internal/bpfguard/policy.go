package bpfguard

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aegis-edge/aegis/internal/keyfile"
	"go.yaml.in/yaml/v3"
)

// Policy says what an object may contain. Names are the kernel's: program
// types and map types as bpftool spells them ("xdp", "lru_hash"), helpers
// with their bpf_ prefix ("bpf_map_lookup_elem"). The zero value allows
// nothing; start from DefaultPolicy or ShieldPolicy.
type Policy struct {
	// MaxObjectSize bounds the object file in bytes; it is checked before
	// anything else reads the bytes.
	MaxObjectSize int `yaml:"max_object_size" json:"max_object_size"`
	// ProgramTypes lists the allowed program types.
	ProgramTypes []string `yaml:"program_types" json:"program_types"`
	// MaxInstructions bounds each program's length in 8-byte instruction
	// slots, as the kernel counts them (a 64-bit immediate load is two).
	MaxInstructions int `yaml:"max_instructions" json:"max_instructions"`
	// Helpers lists the helper functions a program may call.
	Helpers []string `yaml:"helpers" json:"helpers"`
	// Kfuncs lists the kernel functions a program may call by BTF name.
	Kfuncs []string `yaml:"kfuncs,omitempty" json:"kfuncs,omitempty"`
	// MapTypes lists the allowed map types.
	MapTypes []string `yaml:"map_types" json:"map_types"`
	// MaxEntries bounds max_entries of every map not named in MapCaps.
	MaxEntries uint32 `yaml:"max_entries" json:"max_entries"`
	// MapCaps bounds max_entries per map name, overriding MaxEntries.
	MapCaps map[string]uint32 `yaml:"map_caps,omitempty" json:"map_caps,omitempty"`
	// MemoryBudget bounds the total estimated memory of all maps, in bytes.
	MemoryBudget uint64 `yaml:"memory_budget" json:"memory_budget"`
	// AllowedDigests are hex SHA-256 digests of objects trusted as they are,
	// such as the shield's object as recorded when it was generated.
	AllowedDigests []string `yaml:"allowed_digests,omitempty" json:"allowed_digests,omitempty"`
	// PublicKeys are the ed25519 keys whose signature makes any other object
	// trusted: base64 of the 32-byte key, or (in a policy file only) the path
	// of a PEM "PUBLIC KEY" file, relative to the policy file.
	PublicKeys []string `yaml:"public_keys,omitempty" json:"public_keys,omitempty"`
}

// DefaultMaxObjectSize is the default bound on an object file: 1 MiB.
const DefaultMaxObjectSize = 1 << 20

// DefaultPolicy is the generic safe policy: networking program types only,
// helpers that neither read nor write memory outside the program's context
// and maps, no debug output, no tail calls, no map-in-map, and no trusted
// digest or key (an object passes only once the caller adds one).
func DefaultPolicy() Policy {
	return Policy{
		MaxObjectSize:   DefaultMaxObjectSize,
		ProgramTypes:    []string{"socket_filter", "sched_cls", "sched_act", "xdp", "cgroup_skb"},
		MaxInstructions: 1_000_000, // the kernel's own ceiling for privileged programs
		Helpers: []string{
			"bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem",
			"bpf_map_push_elem", "bpf_map_pop_elem", "bpf_map_peek_elem",
			"bpf_ktime_get_ns", "bpf_ktime_get_boot_ns", "bpf_ktime_get_coarse_ns", "bpf_jiffies64",
			"bpf_get_prandom_u32", "bpf_get_smp_processor_id", "bpf_get_numa_node_id",
			"bpf_spin_lock", "bpf_spin_unlock", "bpf_loop",
			"bpf_perf_event_output", "bpf_ringbuf_output", "bpf_ringbuf_reserve",
			"bpf_ringbuf_submit", "bpf_ringbuf_discard", "bpf_ringbuf_query",
			"bpf_csum_diff", "bpf_l3_csum_replace", "bpf_l4_csum_replace",
			"bpf_skb_load_bytes", "bpf_skb_load_bytes_relative", "bpf_skb_store_bytes",
			"bpf_get_hash_recalc", "bpf_redirect",
			"bpf_xdp_adjust_head", "bpf_xdp_adjust_meta", "bpf_xdp_adjust_tail",
			"bpf_xdp_get_buff_len", "bpf_xdp_load_bytes", "bpf_xdp_store_bytes",
		},
		MapTypes: []string{
			"hash", "array", "percpu_hash", "percpu_array", "lru_hash", "lru_percpu_hash",
			"lpm_trie", "ringbuf", "perf_event_array", "queue", "stack",
		},
		MaxEntries:   1 << 20,
		MemoryBudget: 256 << 20,
	}
}

// ShieldCaps are the max_entries ceilings of the shield's maps, as declared
// in internal/shield/bpf/shield.c.
type ShieldCaps struct {
	BlockV4 uint32 // block_v4, block_v4_lpm (hash maps both: the prefixes by length)
	BlockV6 uint32 // block_v6, block_v6_lpm
	Allow   uint32 // allow_v4, allow_v6, allow_v4_lpm, allow_v6_lpm
	Sources uint32 // sources, the rate-limit table: buckets of 4 ways
	Events  uint32 // events, the ring buffer (bytes)
}

// DefaultShieldCaps are the shield's ceilings at the time of writing.
func DefaultShieldCaps() ShieldCaps {
	return ShieldCaps{BlockV4: 1 << 20, BlockV6: 1 << 19, Allow: 1 << 16, Sources: 1 << 14, Events: 1 << 18}
}

// shieldSmallMaps bounds the shield's maps not named in ShieldCaps (config,
// counters, prefilters, perf_events, .rodata): all hold a handful of entries.
const shieldSmallMaps = 64

// ShieldPolicy is the shield's own policy: XDP programs (the data path and
// its clock probe) with the helpers and map types they use, each list map
// bounded by its ceiling, and the object trusted only by its recorded digest.
func ShieldPolicy(caps ShieldCaps, digest string) Policy {
	p := DefaultPolicy()
	p.ProgramTypes = []string{"xdp"}
	// The shield is about 4,800 instructions with its global functions
	// (the ways of the exact and prefix tables are unrolled: a probe is
	// straight-line code); 8,192 leaves room to grow and is still far
	// below what the verifier takes (a million).
	p.MaxInstructions = 8192
	p.Helpers = []string{
		"bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem",
		"bpf_ktime_get_ns", "bpf_ktime_get_boot_ns", "bpf_jiffies64", "bpf_get_smp_processor_id",
		"bpf_ringbuf_reserve", "bpf_ringbuf_submit", "bpf_ringbuf_discard", "bpf_ringbuf_output",
		"bpf_perf_event_output",
	}
	p.MapTypes = []string{"hash", "lpm_trie", "lru_hash", "array", "percpu_array", "ringbuf", "perf_event_array"}
	p.MaxEntries = shieldSmallMaps
	p.MapCaps = map[string]uint32{
		"block_v4": caps.BlockV4, "block_v4_lpm": caps.BlockV4,
		"block_v6": caps.BlockV6, "block_v6_lpm": caps.BlockV6,
		"allow_v4": caps.Allow, "allow_v4_lpm": caps.Allow,
		"allow_v6": caps.Allow, "allow_v6_lpm": caps.Allow,
		"sources": caps.Sources,
		"events":  caps.Events,
		// exact_filters: 4 bitmaps of 2^22 bits in blocks of 2^15 bits.
		"exact_filters": 512,
		// autoblock_marks: one word per 2^16 hash buckets of sources.
		"autoblock_marks": 1 << 16,
		// management: prefixes exempt from automatic blocks, 1,024 a family.
		"management": 2048,
		// prefix_lens_v4/v6: the prefix lengths present, per list, 16
		// /16s or 4 IPv6 buckets (of 2^16) to a value.
		"prefix_lens_v4": 2 * (1 << 16) / 16,
		"prefix_lens_v6": 2 * (1 << 16) / 4,
		// exact_table_v4/v6: 4-way buckets of the exact addresses, 2^13
		// for the allowlist and 2^17 (IPv4) or 2^16 (IPv6) for the
		// blocklist; exact_slots: a hit counter and rule id per way.
		"exact_table_v4": 1<<13 + 1<<17,
		"exact_table_v6": 1<<13 + 1<<16,
		"exact_slots":    4 * (1<<13 + 1<<17 + 1<<13 + 1<<16),
		// prefix_table_v4/v6: 4-way buckets of the prefixes, 2^11 for
		// the allowlist and 2^14 for the blocklist; prefix_slots: a hit
		// counter and rule id per way of both.
		"prefix_table_v4": 1<<11 + 1<<14,
		"prefix_table_v6": 1<<11 + 1<<14,
		"prefix_slots":    2 * 4 * (1<<11 + 1<<14),
	}
	// Every map full at its ceiling is about 340 MiB by the estimate (see
	// EstimateMapBytes; 1005 instructions and 355,762,816 bytes when this was
	// written); the budget leaves half as much again for growth.
	p.MemoryBudget = 512 << 20
	p.AllowedDigests = []string{digest}
	return p
}

// Validate checks that every name in the policy is known, every digest and
// key decodes, and every bound is positive.
func (p Policy) Validate() error {
	var errs []error
	if p.MaxObjectSize <= 0 {
		errs = append(errs, errors.New("max_object_size: must be positive"))
	}
	if p.MaxInstructions <= 0 {
		errs = append(errs, errors.New("max_instructions: must be positive"))
	}
	for _, t := range p.ProgramTypes {
		if _, ok := programTypeByName[t]; !ok {
			errs = append(errs, fmt.Errorf("program_types: unknown program type %q", t))
		}
	}
	for _, t := range p.MapTypes {
		if _, ok := mapTypeByName[t]; !ok {
			errs = append(errs, fmt.Errorf("map_types: unknown map type %q", t))
		}
	}
	for _, h := range p.Helpers {
		if _, ok := helperByName()[h]; !ok {
			errs = append(errs, fmt.Errorf("helpers: unknown helper %q (names are the kernel's, e.g. bpf_map_lookup_elem)", h))
		}
	}
	for _, d := range p.AllowedDigests {
		if b, err := hex.DecodeString(d); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("allowed_digests: %q is not a hex SHA-256 digest", d))
		}
	}
	if _, err := p.publicKeys(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// publicKeys decodes PublicKeys, which Validate and LoadPolicy have reduced
// to base64.
func (p Policy) publicKeys() ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(p.PublicKeys))
	for _, s := range p.PublicKeys {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("public_keys: %q is not a base64 ed25519 public key", s)
		}
		keys = append(keys, ed25519.PublicKey(b))
	}
	return keys, nil
}

// MaxPolicyFileSize bounds a policy file.
const MaxPolicyFileSize = 1 << 20

// LoadPolicy reads a YAML (or JSON) policy file. Keys present replace the
// corresponding field of DefaultPolicy, lists as a whole; unknown keys are
// errors. public_keys entries that are not base64 keys are read as PEM files,
// relative to the policy file's directory.
func LoadPolicy(path string) (Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return Policy{}, fmt.Errorf("loading policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyFileSize+1))
	if err != nil {
		return Policy{}, fmt.Errorf("loading policy %s: %w", path, err)
	}
	p, err := parsePolicy(data, filepath.Dir(path))
	if err != nil {
		return Policy{}, fmt.Errorf("loading policy %s: %w", path, err)
	}
	return p, nil
}

// parsePolicy decodes a policy document; key file paths are relative to dir.
func parsePolicy(data []byte, dir string) (Policy, error) {
	if len(data) > MaxPolicyFileSize {
		return Policy{}, fmt.Errorf("policy is larger than %d bytes", MaxPolicyFileSize)
	}
	p := DefaultPolicy()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Policy{}, fmt.Errorf("parsing policy: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Policy{}, errors.New("parsing policy: more than one YAML document")
	}
	for i, k := range p.PublicKeys {
		if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) == ed25519.PublicKeySize {
			continue
		}
		path := k
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		key, err := keyfile.ReadPublicKey(path)
		if err != nil {
			return Policy{}, fmt.Errorf("public_keys: %w", err)
		}
		p.PublicKeys[i] = base64.StdEncoding.EncodeToString(key)
	}
	for i, d := range p.AllowedDigests {
		p.AllowedDigests[i] = strings.ToLower(d)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// WithPublicKeys returns a copy of the policy that also trusts keys.
func (p Policy) WithPublicKeys(keys ...ed25519.PublicKey) Policy {
	p.PublicKeys = slices.Clone(p.PublicKeys)
	for _, k := range keys {
		p.PublicKeys = append(p.PublicKeys, base64.StdEncoding.EncodeToString(k))
	}
	return p
}

// WithDigests returns a copy of the policy that also trusts the objects with
// these hex SHA-256 digests.
func (p Policy) WithDigests(digests ...string) Policy {
	p.AllowedDigests = slices.Clone(p.AllowedDigests)
	for _, d := range digests {
		p.AllowedDigests = append(p.AllowedDigests, strings.ToLower(d))
	}
	return p
}
