// Package manifest loads and validates the components manifest: which package
// version of which tool each distro's node image carries, and which Kubernetes
// versions it serves.
package manifest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sigs.k8s.io/yaml"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// MaxSize bounds a manifest file: a real one is a few KiB, and a bound keeps a
// 100 MB file (or a pipe that never ends) from being read into memory.
const MaxSize = 1 << 20

// BinDir holds the versioned binaries that bake produces.
const BinDir = "/opt/bin"

// Manifest is the decoded document.
type Manifest struct {
	// Tools overrides the per-tool defaults (package name, paths, exit code).
	Tools map[string]Tool `json:"tools,omitempty" validate:"dive,keys,toolname,endkeys"`
	// Components lists what the node images carry.
	Components []Component `json:"components" validate:"required,min=1,dive"`

	file string
}

// Tool holds per-tool settings; every field has a default.
type Tool struct {
	Package     string   `json:"package,omitempty" validate:"omitempty,max=64,toolname"`
	CacheDir    string   `json:"cacheDir,omitempty" validate:"omitempty,diskpath"`
	BinaryPaths []string `json:"binaryPaths,omitempty" validate:"omitempty,dive,pkgpath"`
	Target      string   `json:"target,omitempty" validate:"omitempty,diskpath"`
	ExitCode    int      `json:"exitCode,omitempty" validate:"omitempty,min=6,max=255"` // 1–5 are reconcile's own codes
	VersionArgs []string `json:"versionArgs,omitempty" validate:"omitempty,dive,required"`
}

// Component is one package version of one tool for one distro.
type Component struct {
	Tool           string   `json:"tool" validate:"required,max=64,toolname"`
	Distro         string   `json:"distro" validate:"required,distro"`
	PackageVersion string   `json:"packageVersion" validate:"required"`
	K8sVersion     string   `json:"k8sVersion,omitempty"`
	Arches         []string `json:"arches,omitempty" validate:"omitempty,min=1,unique,dive,oneof=amd64 arm64"`
}

// builtin are the defaults for tools node provisioning already knows; the
// exit codes are the ones its scripts and alerts expect.
var builtin = map[string]Tool{
	"kubelet":                       {ExitCode: 121},
	"kubectl":                       {ExitCode: 122, VersionArgs: []string{"version", "--client"}},
	"azure-acr-credential-provider": {ExitCode: 205, Target: "/var/lib/kubelet/credential-provider/acr-credential-provider"},
}

// DefaultExitCode is a boot failure's exit code for a tool with none set.
const DefaultExitCode = 1

// File is where the manifest came from, for messages.
func (m *Manifest) File() string { return m.file }

// Load reads and parses a manifest file.
func Load(file string) (*Manifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, &Error{File: file, Problems: []Problem{{Msg: err.Error()}}}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{File: file, Problems: []Problem{{Msg: "reading: " + err.Error()}}}
	}
	return Parse(file, data)
}

// Parse decodes and validates a manifest; name is used in messages. Every
// problem is reported, each with the path of its field and, where known, its
// line.
func Parse(name string, data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: name, Problems: []Problem{{Msg: fmt.Sprintf("larger than %d bytes: not a components manifest", MaxSize)}}}
	}
	lines, value, problems := checkShape(data)
	if lines == nil {
		return nil, &Error{File: name, Problems: problems}
	}
	var m Manifest
	var err error
	if len(problems) == 0 {
		// The shape check has refused everything YAML 1.1 and 1.2 read
		// differently, so the strict decoder sees what it saw.
		err = yaml.UnmarshalStrict(data, &m)
	} else {
		// value holds only what has the shape of a Manifest, as JSON
		// values: decoding it lets validation report the other problems.
		var b []byte
		if b, err = json.Marshal(value); err == nil {
			err = json.Unmarshal(b, &m)
		}
	}
	if err != nil {
		return nil, &Error{File: name, Problems: append(problems, Problem{Msg: "decoding: " + err.Error()})}
	}
	// Validate even a manifest with shape problems, so one run reports all
	// problems; nothing under a field that already has one is reported again.
	var bad []string
	for _, p := range problems {
		bad = append(bad, p.Path)
	}
	for _, p := range m.validate(bad) {
		if !under(p.Path, bad) {
			p.Line = lineOf(lines, p.Path)
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		// In file order; problems without a line (whole-manifest rules) last.
		slices.SortStableFunc(problems, func(a, b Problem) int {
			return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line))
		})
		return nil, &Error{File: name, Problems: problems}
	}
	m.file = name
	return &m, nil
}

// Entry is a component resolved for one architecture, with every default
// applied: what plan and apply work from.
type Entry struct {
	Index       int // position in components, for messages
	Tool        string
	Package     string
	Distro      platform.Distro
	Arch        platform.Arch
	Version     pkgversion.Version
	K8s         string // what it serves, canonical: "1.34.10", or "1.34" for a minor line
	CacheDir    string // absolute, e.g. /opt/kubelet/downloads
	BinaryPaths []string
	Versioned   string // /opt/bin/<tool>-<version>
	Target      string
	ExitCode    int
	VersionArgs []string

	k8s   *semver.Version
	minor bool // K8s names a minor line ("1.34") rather than one version
}

// ID names the entry in messages: "components[3] (kubelet ubuntu-24.04 amd64 1.34.10-ubuntu24.04u1)".
func (e Entry) ID() string {
	return fmt.Sprintf("components[%d] (%s %s %s %s)", e.Index, e.Tool, e.Distro, e.Arch, e.Version)
}

// Serves reports whether the entry serves cluster version v.
func (e Entry) Serves(v *semver.Version) bool {
	if e.minor {
		return v.Major() == e.k8s.Major() && v.Minor() == e.k8s.Minor()
	}
	return v.Equal(e.k8s)
}

// Exact reports whether the entry names one cluster version, not a minor line.
func (e Entry) Exact() bool { return !e.minor }

// Entries resolves the components for a distro and architecture, in manifest
// order. The manifest must have passed Parse.
func (m *Manifest) Entries(d platform.Distro, arch platform.Arch) []Entry {
	var out []Entry
	for i, c := range m.Components {
		if c.Distro != d.String() || !slices.Contains(c.arches(), string(arch)) {
			continue
		}
		e, err := m.entry(i, arch)
		if err != nil {
			panic(fmt.Sprintf("manifest: Entries on an unvalidated manifest: %v", err))
		}
		out = append(out, e)
	}
	return out
}

// Distros lists the distros the manifest names, sorted.
func (m *Manifest) Distros() []string {
	var out []string
	for _, c := range m.Components {
		out = append(out, c.Distro)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Tool returns the settings of a tool with defaults applied.
func (m *Manifest) Tool(name string) Tool {
	t := builtin[name]
	o := m.Tools[name]
	if o.Package != "" {
		t.Package = o.Package
	}
	if o.CacheDir != "" {
		t.CacheDir = o.CacheDir
	}
	if len(o.BinaryPaths) > 0 {
		t.BinaryPaths = o.BinaryPaths
	}
	if o.Target != "" {
		t.Target = o.Target
	}
	if o.ExitCode != 0 {
		t.ExitCode = o.ExitCode
	}
	if len(o.VersionArgs) > 0 {
		t.VersionArgs = o.VersionArgs
	}
	if t.Package == "" {
		t.Package = name
	}
	if t.CacheDir == "" {
		t.CacheDir = path.Join("/opt", name, "downloads")
	}
	if len(t.BinaryPaths) == 0 {
		t.BinaryPaths = []string{"usr/bin/" + name, "usr/local/bin/" + name}
	}
	if t.Target == "" {
		t.Target = path.Join(BinDir, name)
	}
	if t.ExitCode == 0 {
		t.ExitCode = DefaultExitCode
	}
	if len(t.VersionArgs) == 0 {
		t.VersionArgs = []string{"--version"}
	}
	return t
}

func (c Component) arches() []string {
	if len(c.Arches) == 0 {
		return []string{string(platform.AMD64), string(platform.ARM64)}
	}
	return c.Arches
}

// entry resolves component i for arch; its errors are validation problems.
func (m *Manifest) entry(i int, arch platform.Arch) (Entry, error) {
	c := m.Components[i]
	d, err := platform.ParseDistro(c.Distro)
	if err != nil {
		return Entry{}, fieldErr("distro", err)
	}
	v, err := pkgversion.Parse(d.Format(), c.PackageVersion)
	if err != nil {
		return Entry{}, fieldErr("packageVersion", err)
	}
	up, err := v.Kube()
	if err != nil {
		return Entry{}, fieldErr("packageVersion", err)
	}
	k8s, minor := up, false
	if c.K8sVersion != "" {
		if k8s, minor, err = parseK8s(c.K8sVersion); err != nil {
			return Entry{}, fieldErr("k8sVersion", err)
		}
	}
	t := m.Tool(c.Tool)
	return Entry{
		Index:       i,
		Tool:        c.Tool,
		Package:     t.Package,
		Distro:      d,
		Arch:        arch,
		Version:     v,
		K8s:         k8sText(k8s, minor),
		CacheDir:    t.CacheDir,
		BinaryPaths: t.BinaryPaths,
		Versioned:   path.Join(BinDir, c.Tool+"-"+v.Upstream),
		Target:      t.Target,
		ExitCode:    t.ExitCode,
		VersionArgs: t.VersionArgs,
		k8s:         k8s,
		minor:       minor,
	}, nil
}

// parseK8s reads "1.34.10" (one version) or "1.34" (a minor line).
func parseK8s(s string) (*semver.Version, bool, error) {
	bare := strings.TrimPrefix(s, "v")
	if strings.Count(bare, ".") == 1 && !strings.ContainsAny(bare, "-+") {
		v, err := semver.StrictNewVersion(bare + ".0")
		if err != nil {
			return nil, false, fmt.Errorf("%q is not a Kubernetes version (1.34.10) or minor line (1.34)", s)
		}
		return v, true, nil
	}
	v, err := semver.StrictNewVersion(bare)
	if err != nil {
		return nil, false, fmt.Errorf("%q is not a Kubernetes version (1.34.10) or minor line (1.34)", s)
	}
	return v, false, nil
}

// k8sText is the canonical spelling of what an entry serves, so that
// "v1.35.7" and "1.35.7" are one version to every comparison.
func k8sText(v *semver.Version, minor bool) string {
	if minor {
		return fmt.Sprintf("%d.%d", v.Major(), v.Minor())
	}
	return v.String()
}

// ParseK8sVersion reads the cluster version a node boots for ("1.34.10" or "v1.34.10").
func ParseK8sVersion(s string) (*semver.Version, error) {
	v, minor, err := parseK8s(s)
	if err != nil {
		return nil, err
	}
	if minor {
		return nil, fmt.Errorf("%q is a minor line: boot needs one version such as %s.10", s, s)
	}
	return v, nil
}

type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.err.Error() }
func fieldErr(field string, err error) error {
	return &fieldError{field: field, err: err}
}

// under reports whether path is one of paths or inside one.
func under(path string, paths []string) bool {
	return slices.ContainsFunc(paths, func(p string) bool {
		return p == "" || path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")
	})
}

// lineOf is the line of path or, for a missing field, of the nearest
// enclosing one.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if line := lines[path]; line > 0 {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return lines[""]
}

func lineOrder(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}

// Resolve picks the tool's entry serving v; one naming v exactly wins over
// a minor line.
func Resolve(entries []Entry, tool string, v *semver.Version) (Entry, bool) {
	var line *Entry
	for _, e := range entries {
		if e.Tool != tool || !e.Serves(v) {
			continue
		}
		if e.Exact() {
			return e, true
		}
		if line == nil {
			line = &e
		}
	}
	if line == nil {
		return Entry{}, false
	}
	return *line, true
}

// Tools lists the tools of entries in manifest order.
func Tools(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		if !slices.Contains(out, e.Tool) {
			out = append(out, e.Tool)
		}
	}
	return out
}

// Served lists what the tool's entries serve, as written.
func Served(entries []Entry, tool string) []string {
	var out []string
	for _, e := range entries {
		if e.Tool == tool {
			out = append(out, e.K8s)
		}
	}
	return out
}
