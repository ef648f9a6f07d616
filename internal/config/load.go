package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvConfigPath is the environment variable that holds the path of the
// configuration file. It is read by the daemon, and skipped by Load.
const EnvConfigPath = "EDGED_CONFIG"

const envPrefix = "EDGED_"

// Load returns Default(), overlaid with the YAML file at path (if path is not
// empty; a missing file is an error), overlaid with the EDGED_* variables in
// environ (in os.Environ form, "KEY=value"). It does not call Validate.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("reading config file: %w", err)
		}
		if cfg, err = Parse(data, path); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.applyEnv(environ); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse returns Default() overlaid with the YAML document in data. Unknown
// and duplicate keys and values of the wrong type are errors; name (the file
// name) and the line start each message. It does not call Validate.
func Parse(data []byte, name string) (Config, error) {
	cfg := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err == io.EOF {
		return cfg, nil // empty file: defaults
	} else if err != nil {
		return Config{}, errors.New(yamlMessage(name, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Config{}, fmt.Errorf("%s:%d: a second YAML document; the file must hold exactly one", name, extra.Line)
	} else if err != io.EOF {
		return Config{}, errors.New(yamlMessage(name, err))
	}
	if len(doc.Content) == 0 {
		return cfg, nil
	}
	root := doc.Content[0]
	if _, v := lookup(root, "version"); v != nil {
		n := Version
		if v.Decode(&n) == nil && n != Version {
			return Config{}, fmt.Errorf("%s:%d: version %d is not supported; this edged reads version %d", name, v.Line, n, Version)
		}
	}
	d := decoder{name: name}
	d.section(root, reflect.ValueOf(&cfg).Elem(), "")
	if len(d.errs) > 0 {
		return Config{}, errors.Join(d.errs...)
	}
	return cfg, nil
}

// decoder overlays a yaml.Node tree on a struct, checking keys against the
// struct's yaml tags.
type decoder struct {
	name string
	errs []error
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s:%d: %s", d.name, n.Line, fmt.Sprintf(format, args...)))
}

func (d *decoder) section(n *yaml.Node, v reflect.Value, path string) {
	what, where := "the document", "at top level"
	if path != "" {
		what, where = path, "in "+path
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty section keeps its defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping (valid keys: %s), not %s", what, strings.Join(keys(v.Type()), ", "), describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "a key %s is %s; keys must be names", where, describe(k))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errorf(k, "duplicate key %q %s (first at line %d)", k.Value, where, line)
			continue
		}
		seen[k.Value] = k.Line
		idx := slices.Index(keys(v.Type()), k.Value)
		if idx < 0 {
			d.errorf(k, "unknown key %q %s (valid keys: %s)", k.Value, where, strings.Join(keys(v.Type()), ", "))
			continue
		}
		f := v.Field(idx)
		p := join(path, k.Value)
		if f.Kind() == reflect.Struct {
			d.section(val, f, p)
			continue
		}
		tmp := reflect.New(f.Type())
		tmp.Elem().Set(f) // a null value keeps the default
		if err := val.Decode(tmp.Interface()); err != nil {
			d.errorf(val, "%s: %s; want %s", p, typeErrorMessage(err), typeName(f.Type()))
			continue
		}
		if tmp.Elem().Kind() == reflect.Slice && tmp.Elem().Len() == 0 {
			tmp.Elem().SetZero() // "[]" and an absent key agree
		}
		f.Set(tmp.Elem())
	}
}

// applyEnv sets the leaf named by each EDGED_<SECTION>_<KEY> variable.
func (c *Config) applyEnv(environ []string) error {
	vars := map[string]reflect.Value{}
	var names []string
	leaves(reflect.ValueOf(c).Elem(), "", func(path string, v reflect.Value) {
		if strings.Contains(path, ".") { // top-level version is the file's, not a setting
			vars[envName(path)] = v
			names = append(names, envName(path))
		}
	})
	var errs []error
	for _, kv := range environ {
		k, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, envPrefix) || k == EnvConfigPath {
			continue
		}
		v, ok := vars[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown variable (valid: %s)", k, strings.Join(similar(names, k), ", ")))
			continue
		}
		if err := setString(v, val); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want %s", k, val, typeName(v.Type())))
		}
	}
	return errors.Join(errs...)
}

// envName returns the environment variable for the YAML path of a leaf, e.g.
// "webrtc.udp_port" -> "EDGED_WEBRTC_UDP_PORT".
func envName(path string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func setString(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(s)
		v.SetInt(int64(d))
		return err
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 10, strconv.IntSize)
		v.SetInt(n)
		return err
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 2s or 500ms"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Slice:
		return "a list of strings (comma-separated in the environment)"
	}
	return "a string"
}

// leaves calls fn for every non-struct field below v with its YAML path.
func leaves(v reflect.Value, path string, fn func(path string, v reflect.Value)) {
	for i := range v.NumField() {
		p := join(path, tagName(v.Type().Field(i)))
		if f := v.Field(i); f.Kind() == reflect.Struct {
			leaves(f, p, fn)
		} else {
			fn(p, f)
		}
	}
}

func keys(t reflect.Type) []string {
	var ks []string
	for i := range t.NumField() {
		ks = append(ks, tagName(t.Field(i)))
	}
	return ks
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// similar returns the names in the same section as name, or all names.
func similar(names []string, name string) []string {
	section, _, _ := strings.Cut(strings.TrimPrefix(name, envPrefix), "_")
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, envPrefix+section+"_") {
			out = append(out, n)
		}
	}
	if out == nil {
		return names
	}
	return out
}

// lookup returns the key and value nodes of key in mapping n, or nils.
func lookup(n *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return fmt.Sprintf("the value %q", n.Value)
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlMessage rewrites yaml.v3's "yaml: line N: msg" as "name:N: msg".
func yamlMessage(name string, err error) string {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return name + ":" + m[1] + ": " + msg[len(m[0]):]
	}
	return name + ": " + strings.TrimPrefix(msg, "yaml: ")
}

// typeErrorMessage returns yaml.v3's decoding errors without their line
// prefixes (the caller adds file and line).
func typeErrorMessage(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = lineRE.ReplaceAllString(m, "")
	}
	return strings.Join(msgs, "; ")
}
