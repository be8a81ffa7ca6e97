package manifest

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/go-playground/validator/v10"

	"github.com/nodeimage/reconcile/internal/platform"
)

// NamePattern is what tool and package names may look like: nothing a path,
// glob or regular expression would read specially.
var NamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)

var mapKey = regexp.MustCompile(`^tools\[([^\]]*)\]`)

// newValidator is built per call: validator caches per instance, and a
// package-level one would be global state for a few microseconds saved.
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		return name
	})
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(v.RegisterValidation("toolname", func(fl validator.FieldLevel) bool {
		return NamePattern.MatchString(fl.Field().String())
	}))
	must(v.RegisterValidation("distro", func(fl validator.FieldLevel) bool {
		_, err := platform.ParseDistro(fl.Field().String())
		return err == nil
	}))
	must(v.RegisterValidation("diskpath", func(fl validator.FieldLevel) bool {
		return diskPathProblem(fl.Field().String()) == ""
	}))
	must(v.RegisterValidation("pkgpath", func(fl validator.FieldLevel) bool {
		return pkgPathProblem(fl.Field().String()) == ""
	}))
	return v
}

func diskPathProblem(p string) string {
	switch {
	case !path.IsAbs(p):
		return "must be an absolute path"
	case path.Clean(p) != p:
		return fmt.Sprintf("must be clean (%s)", path.Clean(p))
	case p == "/":
		return "must not be /"
	case strings.ContainsAny(p, "*?[]\\\n"):
		return "must not hold glob characters, backslashes or newlines"
	}
	return ""
}

func pkgPathProblem(p string) string {
	p = strings.TrimPrefix(p, "./")
	switch {
	case path.IsAbs(p):
		return "must be relative to the package root (usr/bin/kubelet)"
	case path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == "..":
		return "must be a clean path inside the package, without .."
	case strings.ContainsAny(p, "*?[]\\\n"):
		return "must not hold glob characters, backslashes or newlines"
	}
	return ""
}

// validate runs the struct-tag rules, then the rules that span fields and
// entries. Every problem is returned. A component with a problem of its own,
// or under one of the paths in bad, is left out of the rules that span
// entries: its mistake is reported once, not again as a duplicate or a
// kubelet without its kubectl.
func (m *Manifest) validate(bad []string) []Problem {
	var problems []Problem
	add := func(p string, format string, args ...any) {
		i := componentIndex(p)
		entry := ""
		if i >= 0 && i < len(m.Components) {
			c := m.Components[i]
			entry = describe(c.Tool, c.Distro, c.PackageVersion)
		}
		problems = append(problems, Problem{Path: p, Entry: entry, Msg: fmt.Sprintf(format, args...)})
	}

	var verrs validator.ValidationErrors
	if err := newValidator().Struct(m); errors.As(err, &verrs) {
		for _, fe := range verrs {
			_, p, _ := strings.Cut(fe.Namespace(), ".")
			// validator writes map keys as tools[kubelet]; the manifest's
			// own path syntax is tools.kubelet.
			p = mapKey.ReplaceAllString(p, "tools.$1")
			add(p, "%s", tagMessage(fe))
		}
	} else if err != nil {
		add("", "%v", err)
	}

	broken := map[int]bool{}
	for _, p := range problems {
		broken[componentIndex(p.Path)] = true
	}
	for _, p := range bad {
		broken[componentIndex(p)] = true
	}

	// Rules that need parsing or more than one field.
	type key struct{ tool, distro, arch, version string }
	type servesKey struct{ tool, distro, arch, k8s string }
	baked := map[key]int{}
	served := map[servesKey]int{}
	sets := map[string]map[string]map[string][]string{} // distro → arch → tool → k8s versions
	unsure := map[string]bool{}                         // distros with a broken kubelet or kubectl
	for i, c := range m.Components {
		if broken[i] {
			unsure[c.Distro] = true
			continue // its own problem is reported
		}
		for _, a := range c.arches() {
			e, err := m.entry(i, platform.Arch(a))
			if err != nil {
				var fe *fieldError
				if errors.As(err, &fe) {
					add(fmt.Sprintf("components[%d].%s", i, fe.field), "%v", fe.err)
				} else {
					add(fmt.Sprintf("components[%d]", i), "%v", err)
				}
				unsure[c.Distro] = true
				break
			}
			k := key{c.Tool, c.Distro, a, e.Version.Upstream}
			if j, dup := baked[k]; dup {
				add(fmt.Sprintf("components[%d]", i), "same tool, distro, arch (%s) and version as components[%d]: both would bake %s", a, j, e.Versioned)
				break // once per component, and not again as serving twice
			}
			baked[k] = i
			sk := servesKey{c.Tool, c.Distro, a, e.K8s}
			if j, dup := served[sk]; dup {
				add(fmt.Sprintf("components[%d].k8sVersion", i), "%s is served by components[%d] too for %s %s: boot could not choose", e.K8s, j, c.Distro, a)
				break
			}
			served[sk] = i
			if sets[c.Distro] == nil {
				sets[c.Distro] = map[string]map[string][]string{}
			}
			if sets[c.Distro][a] == nil {
				sets[c.Distro][a] = map[string][]string{}
			}
			sets[c.Distro][a][c.Tool] = append(sets[c.Distro][a][c.Tool], e.K8s)
		}
	}
	// A node needs kubelet and kubectl of the same cluster version: an image
	// with kubelet 1.35 and no kubectl 1.35 is broken. Arches that differ the
	// same way are reported together.
	for _, d := range sortedKeys(sets) {
		if unsure[d] {
			continue
		}
		var msgs []string
		arches := map[string][]string{}
		for _, a := range sortedKeys(sets[d]) {
			kubelet, kubectl := sets[d][a]["kubelet"], sets[d][a]["kubectl"]
			if kubelet == nil && kubectl == nil {
				continue
			}
			slices.Sort(kubelet)
			slices.Sort(kubectl)
			if !slices.Equal(kubelet, kubectl) {
				msg := fmt.Sprintf("kubelet serves [%s] but kubectl serves [%s]: both must serve the same cluster versions",
					strings.Join(kubelet, " "), strings.Join(kubectl, " "))
				if arches[msg] == nil {
					msgs = append(msgs, msg)
				}
				arches[msg] = append(arches[msg], a)
			}
		}
		for _, msg := range msgs {
			add("components", "%s %s: %s", d, strings.Join(arches[msg], ", "), msg)
		}
	}
	for _, name := range sortedKeys(m.Tools) {
		if !slices.ContainsFunc(m.Components, func(c Component) bool { return c.Tool == name }) {
			add("tools."+name, "no component uses tool %q: a misspelt name?", name)
		}
	}
	for _, p := range m.pathClashes() {
		add(p.path, "%s", p.msg)
	}
	return problems
}

type clash struct{ path, msg string }

// pathClashes finds boot targets and caches that would step on each other
// or on reconcile's own files: boot removes every other versioned binary of
// a tool and the packages of its cache, and writes the state record, so a
// target that is one of those would be installed and then destroyed.
func (m *Manifest) pathClashes() []clash {
	// In manifest order, so a clash is reported on the later tool.
	var tools []string
	for _, c := range m.Components {
		if NamePattern.MatchString(c.Tool) && !slices.Contains(tools, c.Tool) {
			tools = append(tools, c.Tool)
		}
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	stateDir := path.Dir("/" + stateRecordPath)
	var out []clash
	targets := map[string]string{}
	for _, name := range tools {
		t := m.Tool(name)
		at := "tools." + name + ".target"
		switch {
		case under(t.Target, stateDir):
			out = append(out, clash{at, fmt.Sprintf("%s is under %s, where reconcile keeps its state", t.Target, stateDir)})
		case path.Dir(t.Target) == BinDir && versionedBy(path.Base(t.Target), tools) != "":
			out = append(out, clash{at, fmt.Sprintf("%s has the name of a versioned binary of %s, which boot removes", t.Target, versionedBy(path.Base(t.Target), tools))})
		case targets[t.Target] != "":
			out = append(out, clash{at, fmt.Sprintf("%s is the target of %s too", t.Target, targets[t.Target])})
		}
		targets[t.Target] = name
		cacheAt := "tools." + name + ".cacheDir"
		switch {
		case under(t.CacheDir, stateDir):
			out = append(out, clash{cacheAt, fmt.Sprintf("%s is under %s, where reconcile keeps its state", t.CacheDir, stateDir)})
		case t.CacheDir == BinDir:
			out = append(out, clash{cacheAt, fmt.Sprintf("%s is where the versioned binaries live", BinDir)})
		}
	}
	for _, name := range tools {
		for _, other := range tools {
			// A cache in BinDir or the state dir is reported above.
			if t, c := m.Tool(name).Target, m.Tool(other).CacheDir; path.Dir(t) == c && c != BinDir && !under(c, stateDir) {
				out = append(out, clash{"tools." + name + ".target", fmt.Sprintf("%s is in the package cache of %s, %s", t, other, c)})
			}
		}
	}
	return out
}

// versionedBy is the tool whose versioned binary a file name in BinDir
// would be ("kubelet-1.35.7" → kubelet), or "".
func versionedBy(name string, tools []string) string {
	for _, t := range tools {
		if rest, ok := strings.CutPrefix(name, t+"-"); ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			return t
		}
	}
	return ""
}

// stateRecordPath mirrors state.RecordPath, which this package cannot
// import (state imports nothing of the manifest, and the manifest nothing
// of the disk).
const stateRecordPath = "var/lib/reconcile/state.json"

func tagMessage(fe validator.FieldError) string {
	val := fmt.Sprintf("%v", fe.Value())
	switch fe.Tag() {
	case "required":
		return "missing: this field is required"
	case "min":
		if fe.Kind().String() == "slice" {
			return fmt.Sprintf("needs at least %s item(s)", fe.Param())
		}
		if fe.Field() == "exitCode" {
			return fmt.Sprintf("%s is below the minimum %s: 1 to 5 are reconcile's own exit codes", val, fe.Param())
		}
		return fmt.Sprintf("%s is below the minimum %s", val, fe.Param())
	case "max":
		if fe.Kind() == reflect.String {
			return fmt.Sprintf("%q is longer than %s characters", val, fe.Param())
		}
		return fmt.Sprintf("%s is above the maximum %s", val, fe.Param())
	case "toolname":
		return fmt.Sprintf("%q is not a valid name: expected %s (lower-case letters, digits, . + -)", val, NamePattern)
	case "distro":
		_, err := platform.ParseDistro(val)
		return err.Error()
	case "diskpath":
		return fmt.Sprintf("%q %s", val, diskPathProblem(val))
	case "pkgpath":
		return fmt.Sprintf("%q %s", val, pkgPathProblem(val))
	case "oneof":
		return fmt.Sprintf("%q is not one of: %s", val, fe.Param())
	case "unique":
		return "lists an item more than once"
	}
	return fmt.Sprintf("%q fails rule %s", val, fe.Tag())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
