package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aegis-edge/aegis/internal/shield"
)

// Load reads and parses the configuration file at path. An empty path
// returns Default(); a non-empty path that does not exist is an error.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("loading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("loading config %s: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("loading config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes a YAML configuration onto Default(), so omitted keys keep
// their defaults, and validates the result. Empty input yields Default().
func Parse(data []byte) (Config, error) {
	if len(data) > MaxFileSize {
		return Config{}, fmt.Errorf("config is %d bytes or more, limit is %d", len(data), MaxFileSize)
	}

	// First pass: decode into a node tree to check structure and types
	// key by key, so errors carry dotted paths.
	dec := newDecoder(data)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Default(), nil
		}
		return Config{}, fmt.Errorf("parsing config: %w", err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return Config{}, fmt.Errorf("parsing config: %w", err)
	default:
		return Config{}, fmt.Errorf("parsing config: line %d: multiple YAML documents are not allowed", extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return Default(), nil
	}
	w := walker{present: make(map[string]bool)}
	w.walk(root, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		return Config{}, errors.Join(w.errs...)
	}

	// Second pass: strict decode onto the defaults. The walker has already
	// rejected everything this could reject, so an error here is a bug
	// guard rather than an expected path.
	cfg := Default()
	if err := newDecoder(data).Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("parsing config: %w", err)
	}
	rl := &cfg.Shield.RateLimit
	w.defaultBurst("shield.rate_limit.syn", &rl.SYN)
	w.defaultBurst("shield.rate_limit.udp", &rl.UDP)
	w.defaultBurst("shield.rate_limit.icmp", &rl.ICMP)

	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func newDecoder(data []byte) *yaml.Decoder {
	d := yaml.NewDecoder(bytes.NewReader(data))
	d.KnownFields(true)
	return d
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// walker checks a node tree against a struct type, recording which dotted
// keys are present and every error, each naming its key.
type walker struct {
	present map[string]bool
	errs    []error
}

func (w *walker) errorf(key string, n *yaml.Node, format string, args ...any) {
	if key == "" {
		key = "(top level)"
	}
	w.errs = append(w.errs, fmt.Errorf("%s: %s (line %d)", key, fmt.Sprintf(format, args...), n.Line))
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind == yaml.AliasNode {
		w.errorf(key, n, "YAML aliases are not supported")
		return
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		w.leaf(n, t, key)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty section keeps its defaults
	}
	if n.Kind != yaml.MappingNode {
		w.errorf(key, n, "must be a mapping")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.errorf(key, k, "keys must be strings")
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			w.errorf(sub, k, "unknown key")
			continue
		}
		w.present[sub] = true
		w.walk(v, f.Type, sub)
	}
}

// leaf decodes n into a scratch value of type t to check its type.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, key string) {
	if err := rejectAliases(n); err != nil {
		w.errorf(key, n, "%v", err)
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				w.errs = append(w.errs, fmt.Errorf("%s: %s", key, msg))
			}
			return
		}
		w.errorf(key, n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
}

func rejectAliases(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return errors.New("YAML aliases are not supported")
	}
	for _, c := range n.Content {
		if err := rejectAliases(c); err != nil {
			return err
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// defaultBurst sets burst to 2×pps when the file set pps but not burst.
func (w *walker) defaultBurst(key string, b *Bucket) {
	if !w.present[key+".pps"] || w.present[key+".burst"] {
		return
	}
	b.Burst = shield.DefaultBurst(b.PPS)
}
