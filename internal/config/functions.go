package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aegis-edge/aegis/internal/wasm"
	"go.yaml.in/yaml/v3"
)

// Functions configures edge functions: the defaults every function gets
// unless its deploy overrides them, and the node-wide bounds.
type Functions struct {
	// MaxModuleSize is the largest module a deploy may upload.
	MaxModuleSize Size `yaml:"max_module_size"`
	// Defaults apply to every function unless overridden at deploy.
	Defaults FunctionLimits `yaml:"defaults"`
	// FetchPrivateAddrs lets functions' outbound fetches reach loopback,
	// private and link-local addresses (off: an allowed host name cannot be
	// pointed at the node's own services).
	FetchPrivateAddrs bool `yaml:"fetch_private_addrs"`
	// Workers is the number of sandboxed worker processes that run
	// functions; 0 means one per CPU.
	Workers int `yaml:"workers"`
	// AllowNoMemoryCap lets workers run without a memory cgroup when the
	// host offers none; off, the node refuses to start its workers then.
	AllowNoMemoryCap bool `yaml:"allow_no_memory_cap"`
	// NoPipeline stops the node from sending a busy worker the next
	// request to start once it has answered the one in flight (pipelining,
	// on by default: it saves each request a worker's sleep and wake-up;
	// a request queued that way waits at most 5 ms behind another before
	// it goes to the next free worker instead).
	NoPipeline bool `yaml:"no_pipeline"`

	// CompileTimeout bounds compiling one module version, which happens
	// once, at deploy (and at start), in a sandboxed compile worker that
	// is killed when it expires; the deploy then fails.
	CompileTimeout Duration `yaml:"compile_timeout"`
}

// FunctionLimits are the per-function limits.
type FunctionLimits struct {
	// Fuel is the instruction budget of one request.
	Fuel int64 `yaml:"fuel"`
	// Timeout is the wall-clock deadline of one request.
	Timeout Duration `yaml:"timeout"`
	// Memory is the largest linear memory an instance may grow to.
	Memory          Size     `yaml:"memory"`
	MaxRequestBody  Size     `yaml:"max_request_body"`
	MaxResponseBody Size     `yaml:"max_response_body"`
	FetchCount      int      `yaml:"fetch_count"`
	FetchMaxBody    Size     `yaml:"fetch_max_body"`
	FetchTimeout    Duration `yaml:"fetch_timeout"`
	KVMaxKey        Size     `yaml:"kv_max_key"`
	KVMaxValue      Size     `yaml:"kv_max_value"`
	KVQuota         Size     `yaml:"kv_quota"`
}

// Bounds on function limits.
const (
	// MaxFuel bounds a request's instruction budget (about a minute of CPU).
	MaxFuel = 1 << 40
	// WasmPage is the size of a WebAssembly memory page.
	WasmPage = wasm.PageSize
	// MaxFunctionMemory is the 4 GiB a 32-bit Wasm memory can address.
	MaxFunctionMemory = 4 << 30
)

func defaultFunctions() Functions {
	// The runtime's own defaults are the configuration's: one home.
	def := wasm.DefaultLimits()
	return Functions{
		MaxModuleSize:  Size(def.MaxModuleBytes),
		CompileTimeout: Duration{30 * time.Second},
		Defaults: FunctionLimits{
			Fuel:            def.Fuel,
			Timeout:         Duration{def.Timeout},
			Memory:          Size(def.MemoryPages) * WasmPage,
			MaxRequestBody:  Size(def.MaxRequestBytes),
			MaxResponseBody: Size(def.MaxResponseBytes),
			FetchCount:      def.FetchCount,
			FetchMaxBody:    Size(def.FetchMaxBytes),
			FetchTimeout:    Duration{def.FetchTimeout},
			KVMaxKey:        Size(def.KVMaxKeyBytes),
			KVMaxValue:      Size(def.KVMaxValueBytes),
			KVQuota:         Size(def.KVQuotaBytes),
		},
	}
}

func (v *validator) functions(f Functions) {
	v.sizeRange("functions.max_module_size", f.MaxModuleSize, 1<<10, MaxModuleSizeCeiling)
	v.intRange("functions.workers", f.Workers, 0, 1024)
	v.durRange("functions.compile_timeout", f.CompileTimeout, 100*time.Millisecond, 10*time.Minute)
	v.functionLimits("functions.defaults", f.Defaults)
}

// FunctionLimits validates one set of limits under key.
func (v *validator) functionLimits(key string, l FunctionLimits) {
	if l.Fuel < 1 || l.Fuel > MaxFuel {
		v.addf(key+".fuel", "must be between 1 and %d, got %d", int64(MaxFuel), l.Fuel)
	}
	v.durRange(key+".timeout", l.Timeout, time.Millisecond, 10*time.Minute)
	v.sizeRange(key+".memory", l.Memory, WasmPage, MaxFunctionMemory)
	if l.Memory%WasmPage != 0 {
		v.addf(key+".memory", "must be a multiple of the 64KiB Wasm page, got %s", l.Memory)
	}
	v.sizeRange(key+".max_request_body", l.MaxRequestBody, 0, 1<<30)
	v.sizeRange(key+".max_response_body", l.MaxResponseBody, 1, 1<<30)
	v.intRange(key+".fetch_count", l.FetchCount, 0, 1000)
	v.sizeRange(key+".fetch_max_body", l.FetchMaxBody, 0, 1<<30)
	v.durRange(key+".fetch_timeout", l.FetchTimeout, time.Millisecond, 10*time.Minute)
	v.sizeRange(key+".kv_max_key", l.KVMaxKey, 1, 32<<10)
	v.sizeRange(key+".kv_max_value", l.KVMaxValue, 0, 64<<20)
	v.sizeRange(key+".kv_quota", l.KVQuota, 0, 1<<40)
}

// MaxModuleSizeCeiling is the largest functions.max_module_size: no node
// takes a larger module.
const MaxModuleSizeCeiling Size = 256 << 20

// ValidateFunctionLimits checks per-function limits (as a deploy sets
// them); errors name fields under prefix.
func ValidateFunctionLimits(prefix string, l FunctionLimits) error {
	var v validator
	v.functionLimits(prefix, l)
	return joinErrs(v.errs)
}

func (v *validator) sizeRange(key string, got Size, lo, hi Size) {
	if got < lo || got > hi {
		v.addf(key, "must be between %s and %s, got %s", lo, hi, got)
	}
}

// Size is a byte count written as an integer or with a unit: "512",
// "64KiB", "16MiB", "1GiB", "10MB", "1GB".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
}

// ParseSize reads a Size.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: want bytes or a number with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return Size(n * mult), nil
}

// String writes the size with the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   Size
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s >= u.mult && s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return fmt.Errorf("must be a size such as 1048576 or \"1MiB\", got %q", n.Value)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
