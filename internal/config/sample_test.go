package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestSampleConfig keeps deploy/aegis.yaml honest: it parses, it states
// exactly the defaults, and it shows every key there is.
func TestSampleConfig(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/aegis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(raw)
	if err != nil {
		t.Fatalf("the sample does not parse: %v", err)
	}
	// "[]" in the sample decodes to an empty list, the default is nil.
	if len(got.Admin.ManagementAddrs) == 0 {
		got.Admin.ManagementAddrs = nil
	}
	if len(got.Shield.Interfaces) == 0 {
		got.Shield.Interfaces = nil
	}
	if !reflect.DeepEqual(normalize(got), normalize(Default())) {
		t.Errorf("the sample's values differ from the defaults:\n%+v\nwant\n%+v", got, Default())
	}
	text := string(raw)
	for _, key := range yamlKeys(reflect.TypeFor[Config](), "") {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(text, leaf+":") {
			t.Errorf("the sample does not show %s", key)
		}
	}
}

// yamlKeys lists the dotted keys of a config struct, leaves only.
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshalerType) {
			out = append(out, yamlKeys(ft, key+".")...)
			continue
		}
		out = append(out, key)
	}
	return out
}
