package plan

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/state"
)

// Mode is what the run is for.
type Mode string

const (
	Bake   Mode = "bake"
	Boot   Mode = "boot"
	Verify Mode = "verify"
)

// FormatVersion is the version of the plan's JSON form.
const FormatVersion = "1"

// Request is everything besides the manifest and the disk that decides the plan.
type Request struct {
	Mode           Mode
	Distro         platform.Distro
	Arch           platform.Arch
	K8sVersion     *semver.Version // boot
	EnforcePackage bool            // boot: skip the versioned binaries
	KeepCache      bool            // boot: keep the package cache
	VerifyDigest   bool            // compare full sha256 digests, not just size and mtime
	RequireDeps    bool            // boot: a dependency the node lacks is a problem, not a warning
	Manager        string          // the package manager's name, for Fetch actions
}

// Plan is the list of actions that brings the disk to the manifest.
type Plan struct {
	FormatVersion string   `json:"format_version"`
	Mode          Mode     `json:"mode"`
	Distro        string   `json:"distro"`
	Arch          string   `json:"arch"`
	K8sVersion    string   `json:"k8s_version,omitempty"`
	Actions       []Action `json:"actions"`
	// Notes say what was looked at and not used (a cached package of
	// another version, a tampered binary): for people reading the plan.
	Notes []string `json:"notes,omitempty"`
	// Warnings need a person's attention but do not stop apply: a
	// dependency the node lacks.
	Warnings []string `json:"warnings,omitempty"`
	// Problems are entries the plan cannot satisfy; apply refuses a plan
	// that has any.
	Problems []Problem `json:"problems,omitempty"`
	// Applicable is false when the manifest has nothing for this distro and
	// arch.
	Applicable bool `json:"applicable"`
}

// Problem is an entry the disk cannot satisfy.
type Problem struct {
	Tool     string `json:"tool"`
	Entry    int    `json:"entry"`
	ExitCode int    `json:"exit_code"`
	Message  string `json:"message"`
}

// Error is a plan with problems, as an error.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Message
	}
	return strings.Join(msgs, "\n")
}

// ExitCode is the first problem's code: boot reports the first tool that
// failed, with the code node provisioning knows for it.
func (e *Error) ExitCode() int { return e.Problems[0].ExitCode }

// Err returns the plan's problems as an *Error, or nil.
func (p *Plan) Err() error {
	if len(p.Problems) == 0 {
		return nil
	}
	return &Error{Problems: p.Problems}
}

// Query is what Compute needs observed.
func Query(m *manifest.Manifest, req Request) state.Query {
	q := state.Query{Hash: req.VerifyDigest, BinDirs: []string{manifest.BinDir}}
	// Every directory reconcile writes into may hold a killed run's temp file.
	temps := []string{manifest.BinDir, path.Dir("/" + state.RecordPath)}
	add := func(dir string) {
		if !slices.Contains(temps, dir) {
			temps = append(temps, dir)
		}
	}
	if req.Mode == Boot {
		q.DepsOf = req.Distro.Format()
	}
	for _, e := range m.Entries(req.Distro, req.Arch) {
		if !slices.Contains(q.Tools, e.Tool) {
			q.Tools = append(q.Tools, e.Tool)
		}
		q.Paths = append(q.Paths, e.Versioned, e.Target)
		if !slices.Contains(q.CacheDirs, e.CacheDir) {
			q.CacheDirs = append(q.CacheDirs, e.CacheDir)
		}
		add(path.Dir(e.Versioned))
		add(path.Dir(e.Target))
		add(e.CacheDir)
	}
	q.TempDirs = temps
	return q
}

// Compute diffs the manifest against the observed state.
func Compute(m *manifest.Manifest, st *state.State, req Request) (*Plan, error) {
	p := &Plan{FormatVersion: FormatVersion, Mode: req.Mode, Distro: req.Distro.String(), Arch: string(req.Arch), Actions: []Action{}}
	entries := m.Entries(req.Distro, req.Arch)
	p.Applicable = len(entries) > 0
	if st.RecordErr != nil {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%v: planned as if empty (every binary is checked against its package again, and the record is rewritten)", st.RecordErr))
	}
	for _, t := range st.Temps {
		p.Actions = append(p.Actions, Action{Op: Remove, Entry: -1, Path: t, Reason: "temp file left by an interrupted run"})
	}
	switch req.Mode {
	case Bake:
		for _, e := range entries {
			p.bake(e, st, req)
		}
	case Boot:
		if req.K8sVersion == nil {
			return nil, fmt.Errorf("boot needs the cluster version: --k8s-version or KUBERNETES_VERSION")
		}
		p.K8sVersion = req.K8sVersion.String()
		if p.Applicable {
			p.boot(entries, st, req)
		}
	default:
		// Verify plans nothing: package verify checks the disk.
		return nil, fmt.Errorf("mode %q has no plan", req.Mode)
	}
	p.noteUnused(entries, st)
	return p, nil
}

func (p *Plan) bake(e manifest.Entry, st *state.State, req Request) {
	if ok, why := intact(e, e.Versioned, st, req); ok {
		return
	} else if why != "" {
		p.Notes = append(p.Notes, why)
	}
	pkg, ok := cached(e, st)
	if !ok {
		p.Problems = append(p.Problems, Problem{Tool: e.Tool, Entry: e.Index, ExitCode: 1,
			Message: fmt.Sprintf("%s: no package %s=%s (%s) in %s", e.ID(), e.Package, e.Version, e.Arch, e.CacheDir)})
	}
	a := base(e)
	a.Op, a.PackageFile, a.CacheDir, a.Candidates, a.Path = Extract, pkg.File, e.CacheDir, e.BinaryPaths, e.Versioned
	a.Versioned, a.VersionArgs = true, e.VersionArgs
	a.Reason = "versioned binary missing or not the recorded one"
	p.Actions = append(p.Actions, a)
}

// boot follows the decision order of DESIGN.md for each tool, then removes
// the other versions and the caches once every tool is in place.
func (p *Plan) boot(entries []manifest.Entry, st *state.State, req Request) {
	var cleanup []Action
	for _, tool := range manifest.Tools(entries) {
		e, ok := manifest.Resolve(entries, tool, req.K8sVersion)
		if !ok {
			ex := entries[slices.IndexFunc(entries, func(e manifest.Entry) bool { return e.Tool == tool })]
			p.Problems = append(p.Problems, Problem{Tool: tool, Entry: -1, ExitCode: ex.ExitCode,
				Message: fmt.Sprintf("no %s entry for %s %s serves Kubernetes %s; the manifest's entries serve %s",
					tool, req.Distro, req.Arch, req.K8sVersion, strings.Join(manifest.Served(entries, tool), ", "))})
			continue
		}
		p.bootTool(e, st, req)
		for _, v := range st.Versioned[tool] {
			// Validation keeps targets out of the versioned names; a plan
			// never removes one all the same.
			if p.installs(v) || slices.ContainsFunc(entries, func(o manifest.Entry) bool { return o.Target == v }) {
				continue
			}
			// Only what reconcile wrote is removed: a kubectl plugin, a
			// backup or a directory of a matching name is someone else's.
			if rec, ok := st.Record.Files[v]; !ok || rec.Tool != tool || !st.Files[v].Regular {
				p.Notes = append(p.Notes, fmt.Sprintf("%s is not a binary reconcile wrote (not in the state record): left alone", v))
				continue
			}
			a := base(e)
			a.Op, a.Path, a.Reason = Remove, v, "boot keeps only the target"
			cleanup = append(cleanup, a)
		}
		// Only a cache that holds packages (or will, after a Fetch) is
		// planned for removal: an empty or foreign one is left alone, so a
		// second boot plans nothing. A shared cache is removed once.
		fetches := slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Op == Fetch && a.CacheDir == e.CacheDir })
		if (len(st.Cache[e.CacheDir]) > 0 || fetches) && !req.KeepCache &&
			!slices.ContainsFunc(cleanup, func(a Action) bool { return a.Op == RemoveCache && a.Path == e.CacheDir }) {
			a := base(e)
			a.Op, a.Path, a.Reason = RemoveCache, e.CacheDir, "the node no longer needs the package cache"
			cleanup = append(cleanup, a)
		}
	}
	p.Actions = append(p.Actions, cleanup...)
}

// addAction adds a boot action that bypasses the package manager, with a
// warning (or with RequireDeps a problem) for each dependency of its package
// that the node lacks.
func (p *Plan) addAction(a Action, st *state.State, req Request) {
	p.Actions = append(p.Actions, a)
	if len(a.Depends) == 0 {
		return
	}
	var msg string
	if !st.Deps.Checked {
		msg = fmt.Sprintf("the dependencies of %s %s (%s) cannot be checked: %s", a.Package, a.PackageVersion, strings.Join(a.Depends, ", "), st.Deps.Why)
	} else {
		var missing []string
		for _, d := range a.Depends {
			if st.Deps.Missing[d] {
				missing = append(missing, d)
			}
		}
		if len(missing) == 0 {
			return
		}
		msg = fmt.Sprintf("%s %s depends on %s, which this node lacks (boot bypasses the package manager, so nothing installs them)",
			a.Package, a.PackageVersion, strings.Join(missing, ", "))
	}
	if req.RequireDeps {
		p.Problems = append(p.Problems, Problem{Tool: a.Tool, Entry: a.Entry, ExitCode: a.ExitCode, Message: msg})
	} else {
		p.Warnings = append(p.Warnings, msg)
	}
}

func (p *Plan) installs(versioned string) bool {
	return slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Op == Install && a.From == versioned })
}

func (p *Plan) bootTool(e manifest.Entry, st *state.State, req Request) {
	if ok, why := intact(e, e.Target, st, req); ok {
		return // converged: a second boot plans nothing
	} else if why != "" {
		p.Notes = append(p.Notes, why) // what the target held is replaced
	}
	a := base(e)
	a.Path = e.Target
	if !req.EnforcePackage {
		if ok, why := intact(e, e.Versioned, st, req); ok {
			a.Op, a.From, a.Reason = Install, e.Versioned, "versioned binary matches the bake record"
			a.Depends = st.Record.Files[e.Versioned].Depends
			p.addAction(a, st, req)
			return
		} else if why != "" {
			p.Notes = append(p.Notes, why)
		}
	}
	a.Candidates = e.BinaryPaths
	if pkg, ok := cached(e, st); ok {
		a.Op, a.PackageFile, a.CacheDir, a.Reason = Extract, pkg.File, e.CacheDir, "cached package"
		if req.EnforcePackage {
			a.Reason = "package install enforced: cached package"
		}
		a.Depends = pkg.Depends
		p.addAction(a, st, req)
		return
	}
	a.Op, a.CacheDir, a.Manager = Fetch, e.CacheDir, req.Manager
	if req.RequireDeps {
		p.Warnings = append(p.Warnings, fmt.Sprintf("the dependencies of %s %s are not checked: it is fetched at boot, after planning", e.Package, e.Version))
	}
	a.Reason = fmt.Sprintf("neither %s nor a cached package in %s", e.Versioned, e.CacheDir)
	p.Actions = append(p.Actions, a)
}

// intact reports whether path holds the binary e names, by the state
// record's cheap identity (or the digest with VerifyDigest). When the file
// exists but is not it, why says so.
func intact(e manifest.Entry, path string, st *state.State, req Request) (ok bool, why string) {
	f, exists := st.Files[path]
	if !exists {
		return false, ""
	}
	rec, recorded := st.Record.Files[path]
	switch {
	case !recorded:
		return false, fmt.Sprintf("%s exists but is not in the state record: not trusted, replaced", path)
	case !rec.Of(e.Tool, e.Package, e.Version.String(), string(e.Arch)):
		return false, fmt.Sprintf("%s is %s, not %s", path, rec.What(), state.Describe(e.Tool, e.Package, e.Version.String(), string(e.Arch)))
	case !rec.Matches(f):
		return false, fmt.Sprintf("%s does not match the state record (size %d, mtime %s; recorded %d, %s): treated as missing",
			path, f.Size, f.ModTime.UTC().Format("2006-01-02T15:04:05.000000000Z"), rec.Size, rec.ModTime.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	case req.VerifyDigest && f.SHA256 != rec.SHA256:
		return false, fmt.Sprintf("%s has sha256 %s, the record says %s: treated as missing", path, f.SHA256, rec.SHA256)
	}
	return true, ""
}

// cached finds the package for e in its cache dir by the package's own
// metadata, never by its file name.
func cached(e manifest.Entry, st *state.State) (state.Package, bool) {
	for _, pkg := range st.Cache[e.CacheDir] {
		if pkg.Err == nil && pkg.Name == e.Package && pkgversion.Equal(pkg.Version, e.Version) && pkg.Arch.Runs(e.Arch) {
			return pkg, true
		}
	}
	return state.Package{}, false
}

// noteUnused says why cached packages were passed over: unreadable ones
// always, and the others of a tool whose cache was searched in vain (every
// tool at bake; at boot those that must be fetched), so a package whose file
// name lies about its version is visible in the plan.
func (p *Plan) noteUnused(entries []manifest.Entry, st *state.State) {
	used := map[string]bool{}
	searched := map[string]bool{}
	for _, a := range p.Actions {
		used[a.PackageFile] = true
		if p.Mode == Bake || a.Op == Fetch {
			searched[a.Package] = true
		}
	}
	var dirs []string
	for _, e := range entries {
		if !slices.Contains(dirs, e.CacheDir) {
			dirs = append(dirs, e.CacheDir)
		}
	}
	for _, dir := range dirs {
		for _, pkg := range st.Cache[dir] {
			switch {
			case pkg.Err != nil:
				p.Notes = append(p.Notes, fmt.Sprintf("ignored %s: %v", pkg.File, pkg.Err))
			case searched[pkg.Name] && !used[pkg.File]:
				p.Notes = append(p.Notes, fmt.Sprintf("ignored %s: it holds %s=%s (%s), which no entry for %s %s asks for",
					pkg.File, pkg.Name, pkg.Version, pkg.Arch, p.Distro, p.Arch))
			}
		}
	}
}

func base(e manifest.Entry) Action {
	return Action{Tool: e.Tool, Entry: e.Index, Package: e.Package, PackageVersion: e.Version.String(), Arch: string(e.Arch), ExitCode: e.ExitCode}
}
