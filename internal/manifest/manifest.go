// Package manifest loads and validates the components manifest: which version
// of which tool each distro's node image carries, where it comes from (a
// package, a tarball URL or an OCI artifact), and which Kubernetes versions it
// serves.
package manifest

import (
	"cmp"
	"fmt"
	"io"
	"iter"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

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
	Tools map[string]Tool `json:"tools,omitempty"`
	// Components lists what the node images carry.
	Components []Component `json:"components"`
	// DistroSettings holds per-distro fetch settings, keyed by distro.
	DistroSettings map[string]FetchConfig `json:"distros,omitempty"`
	// RequireVersion makes boot refuse a cluster version no entry names.
	RequireVersion bool `json:"requireManifestVersion,omitempty"`

	file string
	// all holds the resolved entries in manifest order, entries the
	// positions in all of each distro and arch's: one slice sized up front,
	// where a slice per target grew by copying every entry again.
	all     []Entry
	entries map[target][]int
}

type target struct {
	distro platform.Distro
	arch   platform.Arch
}

// Tool holds per-tool settings; every field has a default.
type Tool struct {
	Package     string   `json:"package,omitempty"`
	CacheDir    string   `json:"cacheDir,omitempty"`
	BinaryPaths []string `json:"binaryPaths,omitempty"`
	Target      string   `json:"target,omitempty"`
	ExitCode    int      `json:"exitCode,omitempty"` // 1–6 are reconcile's own codes
	VersionArgs []string `json:"versionArgs,omitempty"`
}

// Component is one version of one tool for one distro, from one source: a
// package (PackageVersion), a tarball (URL and SHA256) or an OCI artifact
// (OCI and Digest).
type Component struct {
	Tool           string            `json:"tool"`
	Distro         string            `json:"distro"`
	PackageVersion string            `json:"packageVersion,omitempty"`
	K8sVersion     string            `json:"k8sVersion,omitempty"`
	Arches         []string          `json:"arches,omitempty"`
	Version        string            `json:"version,omitempty"`
	URL            string            `json:"url,omitempty"`
	SHA256         map[string]string `json:"sha256,omitempty"`
	OCI            string            `json:"oci,omitempty"`
	Digest         map[string]string `json:"digest,omitempty"`
	Path           string            `json:"path,omitempty"`
}

// FetchConfig names what a fetch from the distro's repositories refreshes,
// so a miss at boot refreshes one repository, not all of them. Empty means
// the package manager's own configuration, all of it.
type FetchConfig struct {
	// AptSources are source lists (deb): apt-get update reads only these.
	AptSources []string `json:"aptSources,omitempty"`
	// AptTestingSources are added for a version with a '~' (a pre-release).
	AptTestingSources []string `json:"aptTestingSources,omitempty"`
	// DnfRepos are repository ids (rpm): dnf enables only these.
	DnfRepos []string `json:"dnfRepos,omitempty"`
}

// SourceKind is where an entry's binary comes from.
type SourceKind string

const (
	// FromPackage is a deb or rpm package, fetched by the package manager.
	FromPackage SourceKind = "package"
	// FromURL is a tarball downloaded over HTTPS.
	FromURL SourceKind = "url"
	// FromOCI is an OCI artifact whose layer is a tarball.
	FromOCI SourceKind = "oci"
)

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

// Fetch is the distro's fetch settings; the zero value when it has none.
func (m *Manifest) Fetch(d platform.Distro) FetchConfig { return m.DistroSettings[d.String()] }

// RequiresManifestVersion reports whether boot must refuse a cluster version
// that no entry names (requireManifestVersion: true) rather than serve it by
// the package rules.
func (m *Manifest) RequiresManifestVersion() bool { return m.RequireVersion }

// Load reads and parses a manifest file.
func Load(file string) (*Manifest, error) {
	// O_NONBLOCK: a FIFO given as the manifest is refused at once instead
	// of blocking the run; a pipe is read with "-" (standard input).
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{File: file, Problems: []Problem{{Code: CodeRead, Msg: err.Error()}}}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		msg := "not a regular file: pass a pipe as - (standard input)"
		if err != nil {
			msg = err.Error()
		}
		return nil, &Error{File: file, Problems: []Problem{{Code: CodeRead, Msg: msg}}}
	}
	return Read(file, f)
}

// Read parses the manifest that r holds (standard input for "-"); name is
// used in messages. At most MaxSize bytes are read.
func Read(name string, r io.Reader) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, &Error{File: name, Problems: []Problem{{Code: CodeRead, Msg: "reading: " + err.Error()}}}
	}
	return Parse(name, data)
}

// Parse decodes and validates a manifest; name is used in messages. Every
// problem is reported, each with the path of its field and, where known, its
// line. The YAML is parsed once; every entry is resolved here, once, so
// Entries only looks them up.
func Parse(name string, data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, &Error{File: name, Problems: []Problem{{Code: CodeTooLarge, Msg: fmt.Sprintf("larger than %d bytes: not a components manifest", MaxSize)}}}
	}
	var m Manifest
	d, problems := decode(data, &m)
	if d == nil {
		return nil, &Error{File: name, Problems: problems}
	}
	// Validate even a manifest with shape problems, so one run reports all
	// problems; nothing under a field that already has one is reported again.
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.Path] = true
	}
	for _, p := range m.validate(bad) {
		if !under(p.Path, bad) {
			p.Line = lineOf(d.lines, p.Path)
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		d.name(problems)
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
	Version     pkgversion.Version // for url and oci entries: Upstream is the version
	K8s         string             // what it serves, canonical: "1.34.10", "1.34" for a minor line, or the constraint
	CacheDir    string             // absolute, e.g. /opt/kubelet/downloads
	BinaryPaths []string
	Versioned   string // /opt/bin/<tool>-<version>
	Target      string
	ExitCode    int
	VersionArgs []string

	Source SourceKind
	URL    string // url entries: the tarball, ${arch} and ${version} substituted
	Ref    string // oci entries: registry/repo:tag, substituted
	Digest string // url and oci entries: "sha256:<hex>" of the artifact for Arch
	Path   string // url and oci entries: the binary inside the tarball

	serve serving
}

// ID names the entry in messages: "components[3] (kubelet ubuntu-24.04 amd64 1.34.10-ubuntu24.04u1)".
func (e Entry) ID() string {
	return fmt.Sprintf("components[%d] (%s %s %s %s)", e.Index, e.Tool, e.Distro, e.Arch, e.Version)
}

// Serves reports whether the entry serves cluster version v: the version
// itself, any patch of a minor line, or what a constraint admits (a
// constraint is read on v's release, so 1.35.0-rc.1 is in ">= 1.35").
func (e Entry) Serves(v *semver.Version) bool { return e.serve.serves(v) }

// Exact reports whether the entry names one cluster version, not a minor line
// or a constraint.
func (e Entry) Exact() bool { return e.serve.kind == exact }

// Constraint reports whether the entry serves a constraint ("*", ">= 1.33, < 1.37").
func (e Entry) Constraint() bool { return e.serve.kind == constraint }

// Artifact is what one download fetches: entries with equal artifacts (the
// kubelet and kubectl of one kubernetes-node tarball) share it. "" for a
// package entry.
func (e Entry) Artifact() string {
	switch e.Source {
	case FromURL:
		return e.URL + "@" + e.Digest
	case FromOCI:
		return e.Ref + "@" + e.Digest
	}
	return ""
}

// Entries is the components for a distro and architecture, in manifest
// order, as Parse resolved them.
func (m *Manifest) Entries(d platform.Distro, arch platform.Arch) []Entry {
	idx, ok := m.entries[target{d, arch}]
	if !ok {
		return nil
	}
	out := make([]Entry, len(idx))
	for i, j := range idx {
		out[i] = m.all[j]
	}
	return out
}

// AllEntries yields what Entries lists, without copying the list first:
// for a caller that only reads each entry once.
func (m *Manifest) AllEntries(d platform.Distro, arch platform.Arch) iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, j := range m.entries[target{d, arch}] {
			if !yield(m.all[j]) {
				return
			}
		}
	}
}

// HasEntries reports whether the manifest has components for a distro and
// architecture, without copying them as Entries does.
func (m *Manifest) HasEntries(d platform.Distro, arch platform.Arch) bool {
	return len(m.entries[target{d, arch}]) > 0
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
		out := make([]string, len(platform.Arches))
		for i, a := range platform.Arches {
			out[i] = string(a)
		}
		return out
	}
	return c.Arches
}

func (c Component) source() SourceKind {
	switch {
	case c.URL != "":
		return FromURL
	case c.OCI != "":
		return FromOCI
	}
	return FromPackage
}

// entry resolves component i, once for all its arches; its errors are
// validation problems.
func (m *Manifest) entry(i int, tools map[string]Tool) (Entry, error) {
	c := m.Components[i]
	d, err := platform.ParseDistro(c.Distro)
	if err != nil {
		return Entry{}, fieldErr("distro", err)
	}
	t, ok := tools[c.Tool]
	if !ok {
		t = m.Tool(c.Tool)
		tools[c.Tool] = t
	}
	e := Entry{
		Index:       i,
		Tool:        c.Tool,
		Package:     t.Package,
		Distro:      d,
		CacheDir:    t.CacheDir,
		BinaryPaths: t.BinaryPaths,
		Target:      t.Target,
		ExitCode:    t.ExitCode,
		VersionArgs: t.VersionArgs,
		Source:      c.source(),
	}
	var up *semver.Version
	if e.Source == FromPackage {
		if e.Version, err = pkgversion.Parse(d.Format(), c.PackageVersion); err != nil {
			return Entry{}, fieldErr("packageVersion", err)
		}
		if up, err = e.Version.Kube(); err != nil {
			return Entry{}, fieldErr("packageVersion", err)
		}
	} else {
		if up, err = semver.StrictNewVersion(c.Version); err != nil {
			return Entry{}, fieldErr("version", fmt.Errorf("%q is not a MAJOR.MINOR.PATCH version (1.34.9, without v: a template adds it)", c.Version))
		}
		e.Version = pkgversion.Version{Format: d.Format(), Upstream: c.Version}
		e.Path = strings.TrimPrefix(c.Path, "./")
		e.BinaryPaths = []string{e.Path}
	}
	e.serve = exactServing(up)
	if c.K8sVersion != "" {
		if e.serve, err = parseServing(c.K8sVersion); err != nil {
			return Entry{}, fieldErr("k8sVersion", err)
		}
	}
	e.K8s = e.serve.text
	e.Versioned = path.Join(BinDir, c.Tool+"-"+e.Version.Upstream)
	return e, nil
}

// forArch is the resolved entry e of component c for one arch: the
// artifact's reference and digest for that arch.
func (c Component) forArch(e Entry, arch platform.Arch) Entry {
	e.Arch = arch
	switch e.Source {
	case FromURL:
		e.URL = strings.NewReplacer("${arch}", string(arch), "${version}", c.Version).Replace(c.URL)
		e.Digest = "sha256:" + c.SHA256[string(arch)]
	case FromOCI:
		e.Ref = strings.NewReplacer("${arch}", string(arch), "${version}", c.Version).Replace(c.OCI)
		e.Digest = c.Digest[string(arch)]
	}
	return e
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

// under reports whether path is in bad or inside a path in bad; "" in bad is
// the whole document.
func under(path string, bad map[string]bool) bool {
	if bad[""] || bad[path] {
		return true
	}
	for i := len(path) - 1; i > 0; i-- {
		if (path[i] == '.' || path[i] == '[') && bad[path[:i]] {
			return true
		}
	}
	return false
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

// Resolve picks the tool's entry serving v: one naming v exactly wins over a
// minor line, which wins over a constraint. Validation refuses two entries
// that serve one version at the same rank.
func Resolve(entries []Entry, tool string, v *semver.Version) (Entry, bool) {
	best := -1
	for i, e := range entries {
		if e.Tool != tool || !e.Serves(v) {
			continue
		}
		if best < 0 || e.serve.kind < entries[best].serve.kind {
			best = i
		}
	}
	if best < 0 {
		return Entry{}, false
	}
	return entries[best], true
}

// Tools lists the tools of entries in manifest order.
func Tools(entries []Entry) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		if !seen[e.Tool] {
			seen[e.Tool] = true
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
