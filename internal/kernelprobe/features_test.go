package kernelprobe

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.1.0-56-cloud-amd64", 6, 1, true},
		{"6.12.117+deb12-cloud-amd64", 6, 12, true},
		{"5.4", 5, 4, true},
		{"6.18.44-fc-v657", 6, 18, true},
		{"4.19-rc1", 4, 19, true},
		{"unknown", 0, 0, false},
		{"6", 0, 0, false},
		{"6.x", 0, 0, false},
	}
	for _, tt := range tests {
		major, minor, ok := parseVersion(tt.release)
		if major != tt.major || minor != tt.minor || ok != tt.ok {
			t.Errorf("parseVersion(%q) = %d, %d, %v; want %d, %d, %v", tt.release, major, minor, ok, tt.major, tt.minor, tt.ok)
		}
	}
}

func TestReleaseAtLeast(t *testing.T) {
	tests := []struct {
		release, version string
		ok, known        bool
	}{
		{"6.1.0-56-cloud-amd64", "5.9", true, true},
		{"5.8.0", "5.9", false, true},
		{"5.10.0", "5.9", true, true}, // minor compared as a number
		{"5.9.1", "5.9", true, true},
		{"4.19.0", "5.4", false, true},
		{"unknown", "5.4", false, false},
	}
	for _, tt := range tests {
		ok, known := releaseAtLeast(tt.release, tt.version)
		if ok != tt.ok || known != tt.known {
			t.Errorf("releaseAtLeast(%q, %q) = %v, %v; want %v, %v", tt.release, tt.version, ok, known, tt.ok, tt.known)
		}
	}
}

func TestSpecsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range specs {
		if seen[s.name] {
			t.Errorf("%s listed twice", s.name)
		}
		seen[s.name] = true
		if _, _, ok := parseVersion(s.minKernel); !ok {
			t.Errorf("%s: minimum kernel %q does not parse", s.name, s.minKernel)
		}
		if s.title == "" || s.fallback == "" || s.probe == nil {
			t.Errorf("%s: title, fallback (or consequence) and probe are all needed", s.name)
		}
	}
}

func TestReportQueries(t *testing.T) {
	r := Report{Kernel: "4.19.0-20-amd64", Features: []Feature{
		{Name: XDP, Available: true, Required: true},
		{Name: XDPLink, Available: false},
		{Name: LPMTrie, Required: true, ProbeError: "operation not permitted"},
		{Name: KtimeBootNs, Required: true},
	}}
	if !r.Has(XDP) || r.Has(XDPLink) || r.Has("nosuch") {
		t.Errorf("Has: xdp %v, xdp-link %v, nosuch %v", r.Has(XDP), r.Has(XDPLink), r.Has("nosuch"))
	}
	var missing []string
	for _, f := range r.MissingRequired() {
		missing = append(missing, f.Name)
	}
	if want := []string{LPMTrie, KtimeBootNs}; !slices.Equal(missing, want) {
		t.Errorf("MissingRequired = %v, want %v (an unknown required feature counts)", missing, want)
	}
	if f, _ := r.Feature(LPMTrie); !f.Unknown() {
		t.Error("a feature with a probe error is not Unknown")
	}
	if !r.BelowMinimum() {
		t.Errorf("4.19 is not below the minimum %s", MinimumKernel)
	}
	if (Report{Kernel: "5.4.0"}).BelowMinimum() || (Report{Kernel: "unknown"}).BelowMinimum() {
		t.Error("5.4 or an unparsable release is below the minimum")
	}
}

// TestWithoutForcesMissing checks that Options.Without hides features
// whatever the kernel says (this needs no privilege: hidden features are
// not probed) and refuses names it does not know.
func TestWithoutForcesMissing(t *testing.T) {
	r, err := Probe(Options{Without: []string{XDPLink, RingBuf, MemcgAccounting}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Features); got != len(Names()) {
		t.Fatalf("%d features reported, want %d", got, len(Names()))
	}
	for _, name := range []string{XDPLink, RingBuf, MemcgAccounting} {
		f, ok := r.Feature(name)
		if !ok || f.Available || f.Unknown() || f.Detail != missingByOption {
			t.Errorf("%s: %+v; want missing by option", name, f)
		}
	}
	if _, err := Probe(Options{Without: []string{"xdp-links"}}); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("unknown name: %v, want ErrUnknownFeature", err)
	}
}

// TestReportJSON pins the field names `aegis doctor --json` prints.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(Report{Kernel: "6.1.0", Features: []Feature{{
		Name: Landlock, Title: "t", Available: true, Detail: "ABI 2", MinKernel: "5.13", Fallback: "f",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	f := got["features"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "title", "available", "detail", "min_kernel", "required", "fallback"} {
		if _, ok := f[k]; !ok {
			t.Errorf("feature JSON %s lacks %q", b, k)
		}
	}
	if _, ok := f["probe_error"]; ok {
		t.Errorf("feature JSON %s has an empty probe_error", b)
	}
	if got["kernel"] != "6.1.0" {
		t.Errorf("kernel = %v", got["kernel"])
	}
}
