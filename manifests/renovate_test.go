package manifests

// This test runs renovate.json's custom regex manager over components.yaml
// the way Renovate does, so a manifest edit that Renovate would no longer see
// (a missing or malformed annotation, a flow-style entry) fails here rather
// than silently dropping the component out of dependency updates.
//
// How Renovate runs a regex manager (lib/modules/manager/custom/regex):
//   - each manager whose managerFilePatterns (or legacy fileMatch) match the
//     file's repository path applies; "/…/" is a regular expression, anything
//     else a glob;
//   - matchStringsStrategy "any" (the default): every match string is compiled
//     with the flags "g" and run over the whole file, all matches kept;
//   - per match, each of depName, packageName, currentValue, datasource,
//     versioning, registryUrl is the <field>Template rendered with the named
//     groups when the template is set, else the group of that name; a
//     registryUrl is normalised as a URL; a dependency without a depName (or
//     packageName), a currentValue or a datasource is dropped.
//
// The match strings are JavaScript regular expressions that Renovate compiles
// with RE2 (the node-re2 binding; plain RegExp only when RE2 is missing).
// jsToGo converts one to Go's regexp, which is RE2 too:
//   - named groups: JS (?<name>…) becomes (?P<name>…) (Go accepts both since
//     1.22; the P form keeps the intent explicit);
//   - \uXXXX and \u{X…} become \x{X…}; \/ (an escaped slash, usual in JS
//     literals) becomes /;
//   - rejected, because RE2 rejects them too, so Renovate would fail on the
//     config: lookahead (?=…) (?!…), lookbehind (?<=…) (?<!…), backreferences
//     \1…\9 and \k<name>, control escapes \cX;
//   - flags: Renovate passes only "g", so ^ and $ anchor the whole file (no
//     "m"), . does not match \n (no "s"), matching is case sensitive; Go's
//     defaults are the same. \s is ASCII whitespace in RE2 and in Go (JS
//     RegExp alone would add Unicode spaces; no annotation depends on that).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	yaml3 "go.yaml.in/yaml/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/platform"
)

// manifestPath is components.yaml as Renovate sees it: relative to the
// repository root.
const manifestPath = "manifests/components.yaml"

type renovateConfig struct {
	CustomManagers []customManager `json:"customManagers"`
}

type customManager struct {
	CustomType           string            `json:"customType"`
	ManagerFilePatterns  []string          `json:"managerFilePatterns"`
	FileMatch            []string          `json:"fileMatch"`
	MatchStrings         []string          `json:"matchStrings"`
	MatchStringsStrategy string            `json:"matchStringsStrategy"`
	Templates            map[string]string `json:"-"`
}

// renovateFields are the fields a regex manager fills, from a template or a
// named group (lib/modules/manager/custom/utils.ts validMatchFields, less
// the ones this manifest has no use for).
var renovateFields = []string{"depName", "packageName", "currentValue", "datasource", "versioning", "registryUrl"}

// dep is one extracted dependency.
type dep struct {
	fields map[string]string
	offset int // of the whole match in the file
}

func loadRenovate(t *testing.T) renovateConfig {
	t.Helper()
	data, err := os.ReadFile("../renovate.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg renovateConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("renovate.json: %v", err)
	}
	// The templates, by field.
	var raw struct {
		CustomManagers []map[string]any `json:"customManagers"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for i, m := range raw.CustomManagers {
		cfg.CustomManagers[i].Templates = map[string]string{}
		for k, v := range m {
			if field, ok := strings.CutSuffix(k, "Template"); ok {
				s, ok := v.(string)
				if !ok {
					t.Fatalf("customManagers[%d].%s is not a string", i, k)
				}
				cfg.CustomManagers[i].Templates[field] = s
			}
		}
	}
	return cfg
}

// matchesFile reports whether a managerFilePatterns (or fileMatch) entry
// selects the repository path p: "/re/" is a regular expression, anything
// else a glob (path.Match stands in for minimatch; no "**" here).
func matchesFile(t *testing.T, pattern, p string, legacy bool) bool {
	t.Helper()
	if legacy { // fileMatch: always a regular expression, unanchored
		return regexp.MustCompile(pattern).MatchString(p)
	}
	if len(pattern) >= 2 && strings.HasPrefix(pattern, "/") && strings.HasSuffix(pattern, "/") {
		re, err := jsToGo(pattern[1 : len(pattern)-1])
		if err != nil {
			t.Fatalf("managerFilePatterns %q: %v", pattern, err)
		}
		return regexp.MustCompile(re).MatchString(p)
	}
	ok, err := path.Match(pattern, p)
	if err != nil {
		t.Fatalf("managerFilePatterns %q: %v", pattern, err)
	}
	return ok
}

// jsToGo converts a JavaScript regular expression, as Renovate's RE2 reads
// it, to Go's syntax; see the top of the file.
func jsToGo(js string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(js); i++ {
		c := js[i]
		switch {
		case c == '\\':
			if i+1 >= len(js) {
				return "", fmt.Errorf("trailing backslash")
			}
			n := js[i+1]
			switch {
			case n >= '1' && n <= '9' && !inClass:
				return "", fmt.Errorf("backreference \\%c at %d: RE2 has none", n, i)
			case n == 'k' && !inClass && i+2 < len(js) && js[i+2] == '<':
				return "", fmt.Errorf("named backreference at %d: RE2 has none", i)
			case n == 'c':
				return "", fmt.Errorf("control escape \\c at %d: not supported", i)
			case n == '/':
				b.WriteByte('/')
				i++
			case n == 'u' && i+2 < len(js) && js[i+2] == '{':
				end := strings.IndexByte(js[i:], '}')
				if end < 0 {
					return "", fmt.Errorf("unterminated \\u{ at %d", i)
				}
				b.WriteString(`\x{` + js[i+3:i+end] + `}`)
				i += end
			case n == 'u':
				if i+6 > len(js) {
					return "", fmt.Errorf("short \\u escape at %d", i)
				}
				b.WriteString(`\x{` + js[i+2:i+6] + `}`)
				i += 5
			default:
				b.WriteByte(c)
				b.WriteByte(n)
				i++
			}
		case inClass:
			if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			if strings.HasPrefix(js[i+1:], "^") {
				b.WriteByte('^')
				i++
			}
		case c == '(' && strings.HasPrefix(js[i:], "(?="), c == '(' && strings.HasPrefix(js[i:], "(?!"):
			return "", fmt.Errorf("lookahead at %d: RE2 has none", i)
		case c == '(' && strings.HasPrefix(js[i:], "(?<="), c == '(' && strings.HasPrefix(js[i:], "(?<!"):
			return "", fmt.Errorf("lookbehind at %d: RE2 has none", i)
		case c == '(' && strings.HasPrefix(js[i:], "(?<"):
			b.WriteString("(?P<")
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	if inClass {
		return "", fmt.Errorf("unterminated character class")
	}
	return b.String(), nil
}

// renderTemplate renders the Handlebars subset this config uses: {{{name}}}
// and {{name}} (Renovate renders with escaping off, so both are verbatim).
func renderTemplate(t *testing.T, tmpl string, groups map[string]string) string {
	t.Helper()
	re := regexp.MustCompile(`\{\{\{?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}?\}\}`)
	out := re.ReplaceAllStringFunc(tmpl, func(m string) string {
		return groups[re.FindStringSubmatch(m)[1]]
	})
	if strings.Contains(out, "{{") {
		t.Fatalf("template %q uses Handlebars beyond {{{name}}}: extend renderTemplate", tmpl)
	}
	return out
}

// extract runs the managers of cfg that select file over content, as
// Renovate does.
func extract(t *testing.T, cfg renovateConfig, file string, content []byte) []dep {
	t.Helper()
	var deps []dep
	selected := 0
	for i, m := range cfg.CustomManagers {
		legacy := len(m.ManagerFilePatterns) == 0
		patterns := m.ManagerFilePatterns
		if legacy {
			patterns = m.FileMatch
		}
		if !slices.ContainsFunc(patterns, func(p string) bool { return matchesFile(t, p, file, legacy) }) {
			continue
		}
		selected++
		if m.CustomType != "regex" {
			t.Fatalf("customManagers[%d]: customType %q, want regex", i, m.CustomType)
		}
		if s := m.MatchStringsStrategy; s != "" && s != "any" {
			t.Fatalf("customManagers[%d]: matchStringsStrategy %q: this test emulates only \"any\"", i, s)
		}
		for j, js := range m.MatchStrings {
			goRE, err := jsToGo(js)
			if err != nil {
				t.Fatalf("customManagers[%d].matchStrings[%d]: %v", i, j, err)
			}
			re, err := regexp.Compile(goRE)
			if err != nil {
				t.Fatalf("customManagers[%d].matchStrings[%d] as Go %q: %v", i, j, goRE, err)
			}
			for _, loc := range re.FindAllSubmatchIndex(content, -1) {
				groups := map[string]string{}
				for k, name := range re.SubexpNames() {
					if name != "" && loc[2*k] >= 0 {
						groups[name] = string(content[loc[2*k]:loc[2*k+1]])
					}
				}
				d := dep{fields: map[string]string{}, offset: loc[0]}
				for _, f := range renovateFields {
					v := groups[f]
					if tmpl, ok := m.Templates[f]; ok {
						v = renderTemplate(t, tmpl, groups)
					}
					if f == "registryUrl" && v != "" {
						u, err := url.Parse(v)
						if err != nil || u.Scheme == "" || u.Host == "" {
							t.Errorf("offset %d: registryUrl %q is not a URL; Renovate drops it", loc[0], v)
							continue
						}
						v = u.String()
					}
					if v != "" {
						d.fields[f] = v
					}
				}
				if (d.fields["depName"] == "" && d.fields["packageName"] == "") || d.fields["currentValue"] == "" || d.fields["datasource"] == "" {
					t.Errorf("offset %d: match %q is no valid dependency for Renovate: %v", loc[0], content[loc[0]:loc[1]], d.fields)
					continue
				}
				deps = append(deps, d)
			}
		}
	}
	if selected == 0 {
		t.Fatalf("no custom manager of renovate.json selects %s", file)
	}
	return deps
}

// packageVersionLines returns the line of each component's packageVersion.
func packageVersionLines(t *testing.T, data []byte) []int {
	t.Helper()
	var doc yaml3.Node
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "components" {
			continue
		}
		var lines []int
		for _, c := range top.Content[i+1].Content {
			line := 0
			for j := 0; j+1 < len(c.Content); j += 2 {
				if c.Content[j].Value == "packageVersion" {
					line = c.Content[j+1].Line
				}
			}
			lines = append(lines, line)
		}
		return lines
	}
	t.Fatal("no components in the manifest")
	return nil
}

func TestRenovateExtractsEveryPackageVersion(t *testing.T) {
	m, err := manifest.Parse(Name, Components)
	if err != nil {
		t.Fatal(err)
	}
	deps := extract(t, loadRenovate(t), manifestPath, Components)
	lines := packageVersionLines(t, Components)
	if len(lines) != len(m.Components) {
		t.Fatalf("%d components in the YAML, %d parsed", len(lines), len(m.Components))
	}
	byLine := map[int]int{}
	for i, l := range lines {
		byLine[l] = i
	}
	seen := make([]int, len(m.Components))
	registry := map[string]string{} // distro → registryUrl
	for _, d := range deps {
		// The line of the currentValue: the match ends on it.
		end := d.offset + strings.Index(string(Components[d.offset:]), d.fields["currentValue"])
		line := 1 + bytes.Count(Components[:end], []byte("\n"))
		i, ok := byLine[line]
		if !ok {
			t.Errorf("line %d: Renovate extracts %v, which is no component's packageVersion", line, d.fields)
			continue
		}
		seen[i]++
		c := m.Components[i]
		distro, err := platform.ParseDistro(c.Distro)
		if err != nil {
			t.Fatal(err)
		}
		format := string(distro.Format())
		want := map[string]string{
			"depName":      m.Tool(c.Tool).Package,
			"currentValue": c.PackageVersion,
			"datasource":   format,
			"versioning":   format,
		}
		for f, w := range want {
			if got := d.fields[f]; got != w {
				t.Errorf("line %d (components[%d] %s %s): %s %q, want %q", line, i, c.Tool, c.Distro, f, got, w)
			}
		}
		if _, ok := d.fields["packageName"]; ok {
			t.Errorf("line %d: a packageName %q: the annotation has none", line, d.fields["packageName"])
		}
		checkRegistryURL(t, line, format, d.fields["registryUrl"])
		if prev, ok := registry[c.Distro]; ok && prev != d.fields["registryUrl"] {
			t.Errorf("line %d: %s registryUrl %q, but an earlier %s entry has %q", line, c.Distro, d.fields["registryUrl"], c.Distro, prev)
		}
		registry[c.Distro] = d.fields["registryUrl"]
	}
	for i, n := range seen {
		if n != 1 {
			c := m.Components[i]
			t.Errorf("components[%d] (%s %s %s, line %d): extracted %d times, want once", i, c.Tool, c.Distro, c.PackageVersion, lines[i], n)
		}
	}
	if len(deps) != len(m.Components) {
		t.Errorf("Renovate extracts %d dependencies from %d components", len(deps), len(m.Components))
	}
	if len(registry) != len(m.Distros()) {
		t.Errorf("registries for %d distros, the manifest has %d", len(registry), len(m.Distros()))
	}
}

// checkRegistryURL holds a registryUrl to what the datasource needs: deb a
// repository with suite, components and binaryArch query parameters, rpm the
// repodata directory.
func checkRegistryURL(t *testing.T, line int, format, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" {
		t.Errorf("line %d: registryUrl %q: want an https URL", line, raw)
		return
	}
	switch format {
	case "deb":
		for _, p := range []string{"suite", "components", "binaryArch"} {
			if u.Query().Get(p) == "" {
				t.Errorf("line %d: deb registryUrl %q lacks ?%s=", line, raw, p)
			}
		}
	case "rpm":
		if !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/repodata") || u.RawQuery != "" {
			t.Errorf("line %d: rpm registryUrl %q: want the repository's repodata directory", line, raw)
		}
	}
}

// TestRenovateAnnotationShapes runs the manager over small manifests: what it
// must find and what it must not.
func TestRenovateAnnotationShapes(t *testing.T) {
	cfg := loadRenovate(t)
	const repo = "https://packages.microsoft.com/ubuntu/24.04/prod?suite=noble&components=main&binaryArch=amd64"
	tests := []struct {
		name, yaml string
		want       []string // currentValue of each dependency
	}{
		{"double quoted", "    # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n    packageVersion: \"1.34.10-1\"\n", []string{"1.34.10-1"}},
		{"single quoted", "    # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n    packageVersion: '1.34.10-1'\n", []string{"1.34.10-1"}},
		{"unquoted with comment", "    # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n    packageVersion: 1.34.10-1 # pinned\n", []string{"1.34.10-1"}},
		{"epoch", "# renovate: datasource=rpm depName=kubelet registryUrl=https://example.com/repodata\n  packageVersion: \"1:1.34.10-1.azl3\"\n", []string{"1:1.34.10-1.azl3"}},
		{"CRLF", "  # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\r\n  packageVersion: \"1.34.10-1\"\r\n", []string{"1.34.10-1"}},
		{"no registryUrl", "    # renovate: datasource=deb depName=kubelet\n    packageVersion: \"1.34.10-1\"\n", nil},
		{"keys out of order", "    # renovate: depName=kubelet datasource=deb registryUrl=" + repo + "\n    packageVersion: \"1.34.10-1\"\n", nil},
		{"blank line between", "    # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n\n    packageVersion: \"1.34.10-1\"\n", nil},
		{"annotation on a k8sVersion", "    # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n    k8sVersion: \"1.34\"\n", nil},
		{"flow style", "  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.34.10-1\"} # renovate: datasource=deb depName=kubelet registryUrl=" + repo + "\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range extract(t, cfg, manifestPath, []byte(tc.yaml)) {
				got = append(got, d.fields["currentValue"])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("extracted %q, want %q", got, tc.want)
			}
		})
	}
}

func TestJSToGo(t *testing.T) {
	for _, tc := range []struct{ js, goRE, err string }{
		{js: `(?<name>a)`, goRE: `(?P<name>a)`},
		{js: `[(?<x]\(?<y>b)`, goRE: `[(?<x]\(?<y>b)`},
		{js: `[^\]](?<v>\d+)`, goRE: `[^\]](?P<v>\d+)`},
		{js: `a\/b\u00e9\u{1F600}`, goRE: `a/b\x{00e9}\x{1F600}`},
		{js: `(?:x)(?i:y)`, goRE: `(?:x)(?i:y)`},
		{js: `(?=a)`, err: "lookahead"},
		{js: `(?!a)`, err: "lookahead"},
		{js: `(?<=a)b`, err: "lookbehind"},
		{js: `(?<!a)b`, err: "lookbehind"},
		{js: `(a)\1`, err: "backreference"},
		{js: `(?<n>a)\k<n>`, err: "backreference"},
		{js: `[a`, err: "unterminated"},
	} {
		got, err := jsToGo(tc.js)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("jsToGo(%q) = %q, %v; want error %q", tc.js, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.goRE):
			t.Errorf("jsToGo(%q) = %q, %v; want %q", tc.js, got, err, tc.goRE)
		}
	}
}
