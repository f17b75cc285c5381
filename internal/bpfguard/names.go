package bpfguard

import (
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Program and map types by the names bpftool prints, which are the kernel's
// enum names without their prefix.
var (
	programTypeNames = map[ebpf.ProgramType]string{
		ebpf.SocketFilter: "socket_filter", ebpf.Kprobe: "kprobe", ebpf.SchedCLS: "sched_cls",
		ebpf.SchedACT: "sched_act", ebpf.TracePoint: "tracepoint", ebpf.XDP: "xdp",
		ebpf.PerfEvent: "perf_event", ebpf.CGroupSKB: "cgroup_skb", ebpf.CGroupSock: "cgroup_sock",
		ebpf.LWTIn: "lwt_in", ebpf.LWTOut: "lwt_out", ebpf.LWTXmit: "lwt_xmit",
		ebpf.SockOps: "sock_ops", ebpf.SkSKB: "sk_skb", ebpf.CGroupDevice: "cgroup_device",
		ebpf.SkMsg: "sk_msg", ebpf.RawTracepoint: "raw_tracepoint", ebpf.CGroupSockAddr: "cgroup_sock_addr",
		ebpf.LWTSeg6Local: "lwt_seg6local", ebpf.LircMode2: "lirc_mode2", ebpf.SkReuseport: "sk_reuseport",
		ebpf.FlowDissector: "flow_dissector", ebpf.CGroupSysctl: "cgroup_sysctl",
		ebpf.RawTracepointWritable: "raw_tracepoint_writable", ebpf.CGroupSockopt: "cgroup_sockopt",
		ebpf.Tracing: "tracing", ebpf.StructOps: "struct_ops", ebpf.Extension: "ext", ebpf.LSM: "lsm",
		ebpf.SkLookup: "sk_lookup", ebpf.Syscall: "syscall", ebpf.Netfilter: "netfilter",
	}
	mapTypeNames = map[ebpf.MapType]string{
		ebpf.Hash: "hash", ebpf.Array: "array", ebpf.ProgramArray: "prog_array",
		ebpf.PerfEventArray: "perf_event_array", ebpf.PerCPUHash: "percpu_hash",
		ebpf.PerCPUArray: "percpu_array", ebpf.StackTrace: "stack_trace", ebpf.CGroupArray: "cgroup_array",
		ebpf.LRUHash: "lru_hash", ebpf.LRUCPUHash: "lru_percpu_hash", ebpf.LPMTrie: "lpm_trie",
		ebpf.ArrayOfMaps: "array_of_maps", ebpf.HashOfMaps: "hash_of_maps", ebpf.DevMap: "devmap",
		ebpf.SockMap: "sockmap", ebpf.CPUMap: "cpumap", ebpf.XSKMap: "xskmap", ebpf.SockHash: "sockhash",
		ebpf.CGroupStorage: "cgroup_storage", ebpf.ReusePortSockArray: "reuseport_sockarray",
		ebpf.PerCPUCGroupStorage: "percpu_cgroup_storage", ebpf.Queue: "queue", ebpf.Stack: "stack",
		ebpf.SkStorage: "sk_storage", ebpf.DevMapHash: "devmap_hash", ebpf.StructOpsMap: "struct_ops",
		ebpf.RingBuf: "ringbuf", ebpf.InodeStorage: "inode_storage", ebpf.TaskStorage: "task_storage",
		ebpf.BloomFilter: "bloom_filter", ebpf.UserRingbuf: "user_ringbuf", ebpf.CgroupStorage: "cgrp_storage",
		ebpf.Arena: "arena",
	}
	programTypeByName = invert(programTypeNames)
	mapTypeByName     = invert(mapTypeNames)
)

func invert[K comparable](m map[K]string) map[string]K {
	r := make(map[string]K, len(m))
	for k, v := range m {
		r[v] = k
	}
	return r
}

func programTypeName(t ebpf.ProgramType) string {
	if n, ok := programTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("program_type#%d", uint32(t))
}

func mapTypeName(t ebpf.MapType) string {
	if n, ok := mapTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("map_type#%d", uint32(t))
}

// maxHelperID is past the highest helper id the kernel defines today; ids
// are small and dense, so every name is found by walking up to it.
const maxHelperID = 512

// helperByName maps kernel helper names to ids, built once on first use.
var helperByName = sync.OnceValue(func() map[string]int32 {
	m := make(map[string]int32)
	for id := int32(1); id < maxHelperID; id++ {
		if name, ok := knownHelperName(id); ok {
			m[name] = id
		}
	}
	return m
})

// helperName is the kernel's name for helper id ("bpf_map_lookup_elem"), or
// "helper#ID" for an id this build does not know.
func helperName(id int64) string {
	if id > 0 && id < maxHelperID {
		if name, ok := knownHelperName(int32(id)); ok {
			return name
		}
	}
	return fmt.Sprintf("helper#%d", id)
}

// knownHelperName derives the kernel name from cilium/ebpf's Go name:
// FnMapLookupElem becomes bpf_map_lookup_elem, FnSkcToTcp6Sock becomes
// bpf_skc_to_tcp6_sock. A test checks every derived name against the
// kernel's UAPI header.
func knownHelperName(id int32) (string, bool) {
	s := asm.BuiltinFunc(id).String()
	if !strings.HasPrefix(s, "Fn") {
		return "", false // stringer's "BuiltinFunc(N)": unknown
	}
	return "bpf_" + snakeCase(s[2:]), true
}

// snakeCase splits before an upper-case letter that follows a lower-case
// letter or digit, or that starts a word after an acronym ("DPath": d_path).
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prev := r[i-1]
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
