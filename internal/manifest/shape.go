package manifest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yaml2 "go.yaml.in/yaml/v2"
	yaml3 "go.yaml.in/yaml/v3"
)

// decoded is what decode learnt of the document besides its values.
type decoded struct {
	lines map[string]int // of every field, by path
	root  *yaml3.Node
}

// decode is the one YAML decoding path: one yaml.v3 parse to a node tree,
// walked against the Go types, which decides every value (strings only as
// strings, integers only in decimal) and reports every problem (an unquoted
// 1.30, an unknown key, a list where a string belongs) with its path and
// line. A node with a problem is left at its zero value, so later fields keep
// their paths. Aliases are never expanded. A nil result means there is
// nothing to validate.
func decode(data []byte, m *Manifest) (*decoded, []Problem) {
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	var doc yaml3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Code: CodeSyntax, Msg: "empty: expected a mapping with a components list"}}
		}
		return nil, []Problem{{Code: CodeSyntax, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml3.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []Problem{{Code: CodeSyntax, Line: extra.Line, Msg: "more than one YAML document: a manifest is one document"}}
	}
	// A line per field: the colons bound the keys, a hint that spares the
	// map its rehashing as it grows (6% of Parse).
	w := &walker{lines: make(map[string]int, bytes.Count(data, []byte(":"))+1), structs: map[reflect.Type]*structInfo{}}
	w.walk(doc.Content[0], reflect.ValueOf(m).Elem(), "")
	return &decoded{lines: w.lines, root: doc.Content[0]}, w.problems
}

type walker struct {
	lines    map[string]int
	problems []Problem
	structs  map[reflect.Type]*structInfo
}

type structInfo struct {
	index map[string]int // JSON name → field index
	names string         // for messages, in declaration order
}

func (w *walker) info(t reflect.Type) *structInfo {
	if si := w.structs[t]; si != nil {
		return si
	}
	si := &structInfo{index: map[string]int{}}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		si.index[name] = i
		names = append(names, name)
	}
	si.names = strings.Join(names, ", ")
	w.structs[t] = si
	return si
}

func (w *walker) fail(n *yaml3.Node, code, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{Code: code, Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// walk checks n against the type of v and sets v; false when n is not of
// that shape (v is then left as it was).
func (w *walker) walk(n *yaml3.Node, v reflect.Value, path string) bool {
	w.lines[path] = n.Line
	if n.Kind == yaml3.AliasNode || n.Anchor != "" {
		// A manifest is flat data; refusing aliases also refuses alias bombs.
		w.fail(n, CodeYAML, path, "YAML anchors and aliases are not allowed in a manifest")
		return false
	}
	switch v.Kind() {
	case reflect.Struct:
		if !w.expect(n, yaml3.MappingNode, path, "a mapping") {
			return false
		}
		si := w.info(v.Type())
		w.mapping(n, path, func(key string, k, val *yaml3.Node) {
			i, ok := si.index[key]
			if !ok {
				w.fail(k, CodeUnknownField, join(path, key), "unknown field %q: expected one of %s", key, si.names)
				return
			}
			w.walk(val, v.Field(i), join(path, key))
		})
		return true
	case reflect.Map:
		if !w.expect(n, yaml3.MappingNode, path, "a mapping") {
			return false
		}
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
		w.mapping(n, path, func(key string, _, val *yaml3.Node) {
			// Kept even when bad, at its zero value: its problem is
			// reported once, and rules on the keys still see it.
			elem := reflect.New(v.Type().Elem()).Elem()
			w.walk(val, elem, join(path, key))
			v.SetMapIndex(reflect.ValueOf(key), elem)
		})
		return true
	case reflect.Slice:
		if !w.expect(n, yaml3.SequenceNode, path, "a list") {
			return false
		}
		v.Set(reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content)))
		for i, item := range n.Content {
			w.walk(item, v.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		return true
	case reflect.String:
		s, ok := w.str(n, path)
		if ok {
			v.SetString(s)
		}
		return ok
	case reflect.Int:
		i, ok := w.integer(n, path)
		if ok {
			v.SetInt(i)
		}
		return ok
	case reflect.Bool:
		if !w.expect(n, yaml3.ScalarNode, path, "true or false") {
			return false
		}
		if n.Tag != "!!bool" || (n.Value != "true" && n.Value != "false") {
			w.fail(n, CodeType, path, "%q is not a boolean: expected true or false", n.Value)
			return false
		}
		v.SetBool(n.Value == "true")
		return true
	}
	panic("manifest: no decoding for " + v.Type().String())
}

func (w *walker) str(n *yaml3.Node, path string) (string, bool) {
	if !w.expect(n, yaml3.ScalarNode, path, "a string") {
		return "", false
	}
	switch n.Tag {
	case "!!str":
		if n.Style&^yaml3.TaggedStyle == 0 {
			if v := yaml11(n.Value); v != "" {
				w.fail(n, CodeYAML11, path, "unquoted %s is read by YAML 1.1 tools as %s, not a string; quote it", n.Value, v)
				return "", false
			}
		}
		return n.Value, true
	case "!!float", "!!int":
		w.fail(n, CodeType, path, "unquoted number %s: YAML reads it as %s, not the string %q; quote it", n.Value, yamlNumber(n.Value), n.Value)
	case "!!null":
		w.fail(n, CodeType, path, "empty value: expected a string")
	default:
		w.fail(n, CodeType, path, "unquoted %s is read by YAML as %s, not a string; quote it", n.Value, strings.TrimPrefix(n.Tag, "!!"))
	}
	return "", false
}

// integer reads a plain decimal integer. Anything YAML 1.1 and 1.2 tools
// could read differently is refused, not guessed: 0100 is octal 64 to YAML
// 1.1 and 100 to YAML 1.2, 0x40 and 0o100 are 64 to one of them only.
func (w *walker) integer(n *yaml3.Node, path string) (int64, bool) {
	if !w.expect(n, yaml3.ScalarNode, path, "an integer") {
		return 0, false
	}
	s := n.Value
	digits := strings.TrimPrefix(s, "-")
	if n.Tag == "!!int" && len(digits) > 1 && digits[0] == '0' && strings.Trim(digits, "0123456789") == "" {
		w.fail(n, CodeYAML11, path, "%s has a leading zero: YAML 1.1 tools read it as an octal number, YAML 1.2 as decimal; write it without the zero", s)
		return 0, false
	}
	i, err := strconv.ParseInt(s, 10, 32)
	if n.Tag != "!!int" || err != nil || digits == "" || digits[0] == '+' {
		w.fail(n, CodeType, path, "%q is not an integer", s)
		return 0, false
	}
	return i, true
}

// yaml11 says what a YAML 1.1 parser (yaml.v2, PyYAML, many editors and
// bots) reads a plain scalar as, when that is not the string that YAML 1.2
// reads: on, no and y are booleans there, 1_000 a number. It only explains:
// the value is decided above.
func yaml11(s string) string {
	if s == "" || !strings.ContainsRune("0123456789+-.yYnNoOtTfF", rune(s[0])) {
		return ""
	}
	var v any
	if yaml2.Unmarshal([]byte(s), &v) != nil {
		return ""
	}
	switch v.(type) {
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	}
	return ""
}

var kinds = map[yaml3.Kind]string{
	yaml3.MappingNode:  "a mapping",
	yaml3.SequenceNode: "a list",
	yaml3.ScalarNode:   "a scalar",
	yaml3.AliasNode:    "an alias",
	yaml3.DocumentNode: "a document",
}

func (w *walker) expect(n *yaml3.Node, k yaml3.Kind, path, what string) bool {
	if n.Kind == k {
		return true
	}
	found := kinds[n.Kind]
	if n.Kind == yaml3.ScalarNode {
		found = fmt.Sprintf("%q", n.Value)
	}
	w.fail(n, CodeType, path, "expected %s, found %s", what, found)
	return false
}

// mapping calls f for each key of a mapping node, refusing duplicate and
// non-string keys.
func (w *walker) mapping(n *yaml3.Node, path string, f func(key string, k, v *yaml3.Node)) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml3.ScalarNode || k.Tag == "!!merge" {
			w.fail(k, CodeYAML, path, "keys must be plain strings")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			w.fail(k, CodeDuplicateKey, join(path, k.Value), "duplicate key %q (first on line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		f(k.Value, k, v)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlNumber(s string) string {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return "a number"
}

// name gives each problem in a component the entry it is in, by its tool,
// distro and version as written (its own values may not have decoded).
func (d *decoded) name(problems []Problem) {
	type written struct{ tool, desc string }
	var items []written
	if d.root.Kind == yaml3.MappingNode {
		for i := 0; i+1 < len(d.root.Content); i += 2 {
			if d.root.Content[i].Value != "components" || d.root.Content[i+1].Kind != yaml3.SequenceNode {
				continue
			}
			for _, item := range d.root.Content[i+1].Content {
				vals := map[string]string{}
				if item.Kind == yaml3.MappingNode {
					for k := 0; k+1 < len(item.Content); k += 2 {
						if _, dup := vals[item.Content[k].Value]; !dup {
							vals[item.Content[k].Value] = item.Content[k+1].Value
						}
					}
				}
				version := cmp.Or(vals["packageVersion"], vals["version"])
				items = append(items, written{vals["tool"], describe(vals["tool"], vals["distro"], version)})
			}
		}
	}
	for i := range problems {
		if c := componentIndex(problems[i].Path); c >= 0 && c < len(items) {
			problems[i].Entry, problems[i].Tool = items[c].desc, items[c].tool
		}
	}
}

func describe(parts ...string) string {
	parts = slices.DeleteFunc(slices.Clone(parts), func(s string) bool { return s == "" })
	return strings.Join(parts, " ")
}

// componentIndex is the component a path is in ("components[3].tool" → 3), or -1.
func componentIndex(path string) int {
	rest, ok := strings.CutPrefix(path, "components[")
	if !ok {
		return -1
	}
	end := strings.IndexByte(rest, ']')
	if end <= 0 {
		return -1
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return i
}
