package manifest

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml2 "go.yaml.in/yaml/v2"
	yaml3 "go.yaml.in/yaml/v3"
)

// checkShape walks the YAML node tree against the Go types. It reports every
// problem (an unquoted 1.30, an unknown key, a list where a string belongs)
// with its path and line, returns the line of every field for later
// messages, and returns the document as plain JSON values with the bad nodes
// left out: the manifest is decoded from that value, so one YAML parser
// decides everything and aliases are never expanded. A nil value means there
// is nothing to decode.
func checkShape(data []byte) (map[string]int, any, []Problem) {
	dec := yaml3.NewDecoder(strings.NewReader(string(data)))
	var doc yaml3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, []Problem{{Msg: "empty: expected a mapping with a components list"}}
		}
		return nil, nil, []Problem{{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml3.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, []Problem{{Line: extra.Line, Msg: "more than one YAML document: a manifest is one document"}}
	}
	w := &shapeWalker{lines: map[string]int{}}
	value, _ := w.walk(doc.Content[0], reflect.TypeFor[Manifest](), "")
	entries := describeNodes(doc.Content[0])
	for i := range w.problems {
		w.problems[i].Entry = entries[componentIndex(w.problems[i].Path)]
	}
	return w.lines, value, w.problems
}

type shapeWalker struct {
	lines    map[string]int
	problems []Problem
}

func (w *shapeWalker) fail(n *yaml3.Node, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// walk checks n against t and returns its value as json.Unmarshal would
// read it into t, or false when n is not of the shape of t.
func (w *shapeWalker) walk(n *yaml3.Node, t reflect.Type, path string) (any, bool) {
	w.lines[path] = n.Line
	if n.Kind == yaml3.AliasNode || n.Anchor != "" {
		// A manifest is flat data; refusing aliases also refuses alias bombs.
		w.fail(n, path, "YAML anchors and aliases are not allowed in a manifest")
		return nil, false
	}
	switch t.Kind() {
	case reflect.Struct:
		if !w.expect(n, yaml3.MappingNode, path, "a mapping") {
			return nil, false
		}
		fields := map[string]reflect.Type{}
		var names []string
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		out := map[string]any{}
		w.mapping(n, path, func(key string, k, v *yaml3.Node) {
			ft, ok := fields[key]
			if !ok {
				w.fail(k, join(path, key), "unknown field %q: expected one of %s", key, strings.Join(names, ", "))
				return
			}
			if val, ok := w.walk(v, ft, join(path, key)); ok {
				out[key] = val
			}
		})
		return out, true
	case reflect.Map:
		if !w.expect(n, yaml3.MappingNode, path, "a mapping") {
			return nil, false
		}
		out := map[string]any{}
		w.mapping(n, path, func(key string, _, v *yaml3.Node) {
			if val, ok := w.walk(v, t.Elem(), join(path, key)); ok {
				out[key] = val
			}
		})
		return out, true
	case reflect.Slice:
		if !w.expect(n, yaml3.SequenceNode, path, "a list") {
			return nil, false
		}
		// A bad item stays as its zero value, so later items keep their
		// index; fields under a bad path are not reported again.
		out := make([]any, len(n.Content))
		for i, item := range n.Content {
			out[i], _ = w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
		return out, true
	case reflect.String:
		if !w.expect(n, yaml3.ScalarNode, path, "a string") {
			return nil, false
		}
		switch n.Tag {
		case "!!str":
			if n.Style&^yaml3.TaggedStyle == 0 {
				if v := yaml11(n.Value); v != "" {
					w.fail(n, path, "unquoted %s is read by YAML 1.1 tools as %s, not a string; quote it", n.Value, v)
					return nil, false
				}
			}
			return n.Value, true
		case "!!float", "!!int":
			w.fail(n, path, "unquoted number %s: YAML reads it as %s, not the string %q; quote it", n.Value, yamlNumber(n.Value), n.Value)
		case "!!null":
			w.fail(n, path, "empty value: expected a string")
		default:
			w.fail(n, path, "unquoted %s is read by YAML as %s, not a string; quote it", n.Value, strings.TrimPrefix(n.Tag, "!!"))
		}
		return nil, false
	case reflect.Int:
		if !w.expect(n, yaml3.ScalarNode, path, "an integer") {
			return nil, false
		}
		i, err := strconv.ParseInt(n.Value, 10, 32)
		if n.Tag != "!!int" || err != nil {
			w.fail(n, path, "%q is not an integer", n.Value)
			return nil, false
		}
		return i, true
	default:
		panic("manifest: no shape check for " + t.String())
	}
}

// yaml11 says what a YAML 1.1 parser (yaml.v2 under sigs.k8s.io/yaml,
// PyYAML, many editors and bots) reads a plain scalar as, when that is not
// the string that YAML 1.2 reads: on, no and y are booleans there, 1_000 a
// number.
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

func (w *shapeWalker) expect(n *yaml3.Node, k yaml3.Kind, path, what string) bool {
	if n.Kind == k {
		return true
	}
	found := kinds[n.Kind]
	if n.Kind == yaml3.ScalarNode {
		found = fmt.Sprintf("%q", n.Value)
	}
	w.fail(n, path, "expected %s, found %s", what, found)
	return false
}

// mapping calls f for each key of a mapping node, refusing duplicate and
// non-string keys.
func (w *shapeWalker) mapping(n *yaml3.Node, path string, f func(key string, k, v *yaml3.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml3.ScalarNode || k.Tag == "!!merge" {
			w.fail(k, path, "keys must be plain strings")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			w.fail(k, join(path, k.Value), "duplicate key %q (first on line %d)", k.Value, line)
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

// describeNodes names each component by its tool, distro and package version
// as written, so shape problems can say which entry they are in.
func describeNodes(root *yaml3.Node) map[int]string {
	out := map[int]string{}
	if root.Kind != yaml3.MappingNode {
		return out
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "components" || root.Content[i+1].Kind != yaml3.SequenceNode {
			continue
		}
		for j, item := range root.Content[i+1].Content {
			vals := map[string]string{}
			if item.Kind == yaml3.MappingNode {
				for k := 0; k+1 < len(item.Content); k += 2 {
					if _, dup := vals[item.Content[k].Value]; !dup {
						vals[item.Content[k].Value] = item.Content[k+1].Value
					}
				}
			}
			out[j] = describe(vals["tool"], vals["distro"], vals["packageVersion"])
		}
	}
	return out
}

func describe(parts ...string) string {
	parts = slices.DeleteFunc(slices.Clone(parts), func(s string) bool { return s == "" })
	return strings.Join(parts, " ")
}

var componentPath = regexp.MustCompile(`^components\[(\d+)\]`)

// componentIndex is the component a path is in, or -1.
func componentIndex(path string) int {
	m := componentPath.FindStringSubmatch(path)
	if m == nil {
		return -1
	}
	i, _ := strconv.Atoi(m[1])
	return i
}
