package vmtest

import (
	"slices"
	"strings"
	"testing"
)

// A modules.dep in depmod's layout: each line lists the module's whole
// dependency closure, the ones to load last first.
const testModulesDep = `kernel/drivers/net/veth.ko.xz:
kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz
kernel/net/llc/llc.ko.xz:
kernel/net/xfrm/xfrm-user.ko: kernel/net/xfrm/xfrm_algo.ko
kernel/net/xfrm/xfrm_algo.ko:
`

func TestLoadOrder(t *testing.T) {
	deps, err := parseModulesDep(strings.NewReader(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"veth"}, []string{"kernel/drivers/net/veth.ko.xz"}},
		{[]string{"bridge"}, []string{"kernel/net/llc/llc.ko.xz", "kernel/net/802/stp.ko.xz", "kernel/net/bridge/bridge.ko.xz"}},
		// Dashes and underscores name the same module; shared dependencies load once.
		{[]string{"xfrm_user", "xfrm-algo"}, []string{"kernel/net/xfrm/xfrm_algo.ko", "kernel/net/xfrm/xfrm-user.ko"}},
		{[]string{"stp", "bridge"}, []string{"kernel/net/llc/llc.ko.xz", "kernel/net/802/stp.ko.xz", "kernel/net/bridge/bridge.ko.xz"}},
	}
	for _, tt := range tests {
		got, err := deps.loadOrder(tt.names)
		if err != nil {
			t.Errorf("%v: %v", tt.names, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v: load order %v, want %v", tt.names, got, tt.want)
		}
	}
}

func TestLoadOrderErrors(t *testing.T) {
	tests := []struct{ name, dep, module string }{
		{"unknown module", testModulesDep, "nosuch"},
		{"missing dependency", "a.ko: b.ko\n", "a"},
		{"cycle", "a.ko: b.ko\nb.ko: a.ko\n", "a"},
	}
	for _, tt := range tests {
		deps, err := parseModulesDep(strings.NewReader(tt.dep))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got, err := deps.loadOrder([]string{tt.module}); err == nil {
			t.Errorf("%s: load order %v, want an error", tt.name, got)
		}
	}
	if _, err := parseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("a line without a colon parsed")
	}
}

func TestParseBuiltin(t *testing.T) {
	set, err := parseBuiltin(strings.NewReader("kernel/net/ipv6/ipv6.ko\nkernel/drivers/net/net_failover.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !set["ipv6"] || !set["net_failover"] || set["veth"] {
		t.Errorf("built-in set %v", set)
	}
}
