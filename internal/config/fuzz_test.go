package config

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that anything it accepts is
// valid, and that an accepted config survives a marshal/parse round trip.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullConfig))
	f.Add([]byte("shield: {mode: monitor}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that fails Validate: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(cfg)) = %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(cfg), normalize(again)) {
			t.Fatalf("round trip changed config:\n%+v\n%+v", cfg, again)
		}
	})
}

// normalize treats nil and empty slices alike.
func normalize(c Config) Config {
	if len(c.Admin.ManagementAddrs) == 0 {
		c.Admin.ManagementAddrs = nil
	}
	if len(c.Shield.Interfaces) == 0 {
		c.Shield.Interfaces = nil
	}
	for _, s := range []*[]string{&c.Fleet.Servers, &c.Fleet.TrustedKeys, &c.Hub.OperatorKeys, &c.Hub.Cluster.Routes} {
		if len(*s) == 0 {
			*s = nil
		}
	}
	if len(c.Hub.Users) == 0 {
		c.Hub.Users = nil
	}
	return c
}
