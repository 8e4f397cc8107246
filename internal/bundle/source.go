package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseSource decodes operator YAML into a Config, strictly, then validates it (Validate).
//
// Decoding errors name the line and the key path, e.g.
// `line 12: sites[0].pools[0]: unknown field "helth_check"`. Refused: a source over
// MaxSourceBytes, more than one YAML document, unknown and duplicate keys, values of the
// wrong type (a number where a duration string belongs, "yes" for a boolean), and anchors,
// aliases or merge keys (<<) that would expand the document past what a source of the
// maximum size could hold. Validation errors from snapshot.Compile are returned as they are.
// Every error wraps ErrInvalid, or ErrTooLarge for the size limits.
//
// The YAML is walked node by node against the Config types rather than handed to a generic
// decoder, because only the walk knows the key path of each value, and because it lets one
// budget bound the work that aliases can cause.
func ParseSource(src []byte) (*Config, error) {
	if len(src) > MaxSourceBytes {
		return nil, fmt.Errorf("source: %w: %d bytes exceed the limit of %d", ErrTooLarge, len(src), MaxSourceBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, invalid(errors.New("source: empty: want a mapping with serial and sites"))
		}
		return nil, invalid(yamlError(err))
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, invalid(yamlError(err))
	default:
		return nil, invalid(fmt.Errorf("line %d: a second YAML document: a bundle source is one document", docLine(&next)))
	}
	d := &decoder{budget: maxNodes}
	var c Config
	d.value(&doc, reflect.ValueOf(&c).Elem(), "")
	if len(d.errs) > 0 {
		return nil, invalid(errors.Join(d.errs...))
	}
	if err := Validate(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// yamlError drops the parser's "yaml: " prefix; its messages already name the line.
func yamlError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

func docLine(n *yaml.Node) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0].Line
	}
	return n.Line
}

// decoder walks a YAML node tree into Go values. It collects up to maxErrors errors so that
// an operator sees several mistakes per run; budget or depth exhaustion stops it at once.
type decoder struct {
	budget int // nodes that may still be visited, aliases expanded
	depth  int
	errs   []error
	fatal  bool
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.fatal {
		return
	}
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, fmt.Errorf("line %d: too many errors; stopping", n.Line))
		d.fatal = true
		return
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.errs = append(d.errs, fmt.Errorf("line %d: %s", n.Line, msg))
}

// enter charges one node to the budget and one level to the depth, and follows aliases. It
// returns nil when decoding must stop; the caller then calls leave all the same.
func (d *decoder) enter(n *yaml.Node, path string) *yaml.Node {
	d.depth++
	if d.fatal {
		return nil
	}
	if d.depth > maxDepth {
		d.fail(n, path, "nested more than %d levels deep (an alias that contains itself?)", maxDepth)
		d.fatal = true
		return nil
	}
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > maxDepth {
			d.fail(n, path, "unresolvable alias")
			d.fatal = true
			return nil
		}
		n = n.Alias
	}
	d.budget--
	if d.budget < 0 {
		d.fail(n, path, "the document expands to more than %d nodes (aliases or merge keys repeated too often)", maxNodes)
		d.fatal = true
		return nil
	}
	return n
}

func (d *decoder) leave() { d.depth-- }

var (
	durationType    = reflect.TypeFor[Duration]()
	statusRangeType = reflect.TypeFor[StatusRange]()
)

// value decodes n into v, which is addressable. path is n's key path for messages.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	defer d.leave()
	if n = d.enter(n, path); n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) != 1 {
			d.fail(n, path, "want one document")
			return
		}
		d.value(n.Content[0], v, path)
		return
	}
	// A null (`key:` or `key: ~`) leaves the zero value, which is what leaving the key out
	// means too; Validate then says what is required.
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	switch t := v.Type(); {
	case t == durationType:
		if s, ok := d.str(n, path, "a duration string such as \"2s\""); ok {
			dur, err := parseDuration(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			v.SetInt(int64(dur))
		}
	case t == statusRangeType:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
			v.SetString(n.Value)
			return
		}
		if s, ok := d.str(n, path, `a status such as 200 or a range such as "200-399"`); ok {
			v.SetString(s)
		}
	case t.Kind() == reflect.Struct:
		d.structure(n, v, path)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() != reflect.Struct:
		// An optional scalar (*Duration, *bool): given, even as 0 or false, it is set.
		p := reflect.New(t.Elem())
		before := len(d.errs)
		d.value(n, p.Elem(), path)
		if len(d.errs) == before {
			v.Set(p)
		}
	case t.Kind() == reflect.Pointer:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got %s", describe(n))
			return
		}
		p := reflect.New(t.Elem())
		d.structure(n, p.Elem(), path)
		v.Set(p)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
			if d.fatal {
				return
			}
		}
		v.Set(s)
	case t.Kind() == reflect.String:
		if s, ok := d.str(n, path, "a string"); ok {
			v.SetString(s)
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case t.Kind() == reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.fail(n, path, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case t.Kind() == reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			d.fail(n, path, "want a whole number above 0, got %s", describe(n))
			return
		}
		v.SetUint(u)
	case t.Kind() == reflect.Float64:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.fail(n, path, "want a number, got %s", describe(n))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, "want a finite number, got %s", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		// Only reachable if a Config type gains a field of a kind this walker does not know.
		d.fail(n, path, "internal error: cannot decode into %s", t)
	}
}

// str returns a string scalar's value. Only !!str is a string: `name: 123` or `host: true`
// is refused rather than converted, so that what is signed is what the operator meant.
func (d *decoder) str(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.fail(n, path, "want %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

// structure decodes a mapping into the struct v, matching keys to yaml tags.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	for _, p := range d.pairs(n, path) {
		if d.fatal {
			return
		}
		i, ok := fields[p.name]
		if !ok {
			d.fail(p.key, path, "unknown field %q", p.name)
			continue
		}
		d.value(p.val, v.Field(i), join(path, p.name))
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// pair is one key of a mapping after merge keys are resolved.
type pair struct {
	name     string
	key, val *yaml.Node
}

// pairs lists a mapping's keys in order, refusing duplicates, then adds the keys of merge
// sources (`<<: *defaults`, or a list of them) that the mapping does not set itself,
// earlier sources first, as YAML merge keys mean. Every merged key is charged to the
// budget, so merges cannot be used to expand a document without bound.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out []pair
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, path, "duplicate field %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k.Value, k, val})
	}
	for _, m := range merges {
		src := d.enter(m, path)
		if src == nil {
			d.leave()
			return out
		}
		sources := []*yaml.Node{src}
		if src.Kind == yaml.SequenceNode {
			sources = src.Content
		}
		for _, s := range sources {
			out = d.merge(s, path, out, seen)
			if d.fatal {
				break
			}
		}
		d.leave()
	}
	return out
}

func (d *decoder) merge(s *yaml.Node, path string, out []pair, seen map[string]*yaml.Node) []pair {
	defer d.leave()
	if s = d.enter(s, path); s == nil {
		return out
	}
	if s.Kind != yaml.MappingNode {
		d.fail(s, path, "<<: want a mapping or a list of mappings to merge, got %s", describe(s))
		return out
	}
	for _, p := range d.pairs(s, path) {
		if d.fatal {
			return out
		}
		if d.budget--; d.budget < 0 {
			d.fail(p.key, path, "the document expands to more than %d nodes (aliases or merge keys repeated too often)", maxNodes)
			d.fatal = true
			return out
		}
		if _, dup := seen[p.name]; dup {
			continue // the mapping's own keys, and earlier sources, win
		}
		seen[p.name] = p.key
		out = append(out, p)
	}
	return out
}

// yamlFields maps the yaml tag names of struct type t to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int", "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), v)
		}
	}
	return "an empty node"
}
