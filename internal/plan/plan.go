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
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/state"
)

// Mode is what the run is for.
type Mode string

const (
	Bake   Mode = "bake"
	Boot   Mode = "boot"
	Verify Mode = "verify"
)

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
	Manager        string          // the package manager's name, for Fetch actions; "" for none
	// NoManager says why there is no package manager (Manager is ""): a
	// plan that needs a fetch has this problem instead.
	NoManager string
	Offline   bool // no fetch: a package not in its cache is a problem
	// RequireManifestVersion makes a cluster version no entry serves a
	// problem, as for a tool whose entries name no exact version.
	RequireManifestVersion bool
}

// Plan is the list of actions that brings the disk to the manifest, and
// everything apply needs to carry it out: apply reads nothing else.
type Plan struct {
	Mode       Mode
	Distro     string
	Arch       string
	K8sVersion string // boot
	Actions    []Action
	// Report holds what planning found: notes (what was looked at and not
	// used), warnings (a person's attention, apply goes on) and errors
	// (entries the disk cannot satisfy; apply refuses the plan).
	Report report.Report
	// Applicable is false when the manifest has nothing for this distro and
	// arch.
	Applicable bool
	// Record is the state record the plan was computed from (empty when the
	// one on disk was corrupt), less Forgotten: apply updates it, never
	// reads the disk's.
	Record state.Record
	// Forgotten are recorded paths that the disk no longer has (a run killed
	// between a rename or removal and its record write): apply writes the
	// record without them before anything else.
	Forgotten []string

	entries []manifest.Entry // the manifest's for the distro and arch
}

// Reason codes of the plan's report items.
const (
	CodeTempFile           = "temp_file"                // info: a killed run's temp file, removed
	CodeNotInRecord        = "not_in_record"            // info: a file reconcile did not write, replaced
	CodeRecordOther        = "record_other_binary"      // info: the record says another binary is there
	CodeRecordMismatch     = "record_mismatch"          // info: size, mtime or digest differ from the record
	CodeForeignFile        = "foreign_file"             // info: a versioned-looking name reconcile did not write, left alone
	CodePackageUnreadable  = "package_unreadable"       // info: a cached package that cannot be read
	CodePackageUnused      = "package_unused"           // info: a cached package no entry asks for
	CodeRecordCorrupt      = "record_corrupt"           // warning: the record could not be read, planned as empty
	CodeDependencyMissing  = "dependency_missing"       // warning, or error with RequireDeps
	CodeDepsUnchecked      = "dependencies_unchecked"   // warning, or error with RequireDeps
	CodePackageMissing     = "package_missing"          // error: no package in the cache, and --offline
	CodeNoPackageManager   = "no_package_manager"       // error: a package to fetch, and no package manager
	CodeVersionMissing     = "manifest_version_missing" // warning: no entry serves the cluster version, served by the package rules; error when they cannot serve it or with RequireManifestVersion
	CodeDepsCheckedAtFetch = "dependencies_not_checked_before_fetch"
	CodeRecordEntryGone    = "record_entry_gone" // info: a recorded file is gone, forgotten
)

// Error is a plan with problems, as an error.
type Error struct{ Items report.Report }

func (e *Error) Error() string {
	msgs := make([]string, len(e.Items))
	for i, it := range e.Items {
		msgs[i] = it.Message
	}
	return strings.Join(msgs, "\n")
}

// ExitCode is the first problem's code: boot reports the first tool that
// failed, with the code node provisioning knows for it (1 for an Error
// built without items or codes).
func (e *Error) ExitCode() int {
	if len(e.Items) == 0 || e.Items[0].ExitCode == 0 {
		return 1
	}
	return e.Items[0].ExitCode
}

// Err returns the plan's problems as an *Error, or nil.
func (p *Plan) Err() error {
	if errs := p.Report.Of(report.Error); len(errs) > 0 {
		return &Error{Items: errs}
	}
	return nil
}

func (p *Plan) add(kind report.Kind, code, path string, e *manifest.Entry, format string, args ...any) {
	it := report.Item{Kind: kind, Code: code, Path: path, Message: fmt.Sprintf(format, args...)}
	if e != nil {
		it.Tool, it.Entry, it.ExitCode = e.Tool, report.EntryIndex(e.Index), e.ExitCode
	}
	p.Report.Add(it)
}

// Query is what Compute needs observed. Each tool, path and directory is
// listed once, in manifest order: a thousand entries share a handful of
// them, and each path listed is a stat.
func Query(m *manifest.Manifest, req Request) state.Query {
	// Packages stay unopened: PackagesNeeded says which caches a first plan
	// needs read.
	q := state.Query{Hash: req.VerifyDigest, BinDirs: []string{manifest.BinDir}}
	// Every directory reconcile writes into may hold a killed run's temp file.
	temps := []string{manifest.BinDir, path.Dir("/" + state.RecordPath)}
	tools, paths, caches, tempSeen := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, dir := range temps {
		tempSeen[dir] = true
	}
	once := func(seen map[string]bool, list *[]string, s string) {
		if !seen[s] {
			seen[s] = true
			*list = append(*list, s)
		}
	}
	if req.Mode == Boot {
		q.DepsOf = req.Distro.Format()
	}
	for e := range m.AllEntries(req.Distro, req.Arch) {
		once(tools, &q.Tools, e.Tool)
		once(paths, &q.Paths, e.Versioned)
		once(paths, &q.Paths, e.Target)
		once(caches, &q.CacheDirs, e.CacheDir)
		once(tempSeen, &temps, path.Dir(e.Versioned))
		once(tempSeen, &temps, path.Dir(e.Target))
		once(tempSeen, &temps, e.CacheDir)
	}
	q.TempDirs = temps
	return q
}

// Compute diffs the manifest against the observed state.
func Compute(m *manifest.Manifest, st *state.State, req Request) (*Plan, error) {
	entries := m.Entries(req.Distro, req.Arch)
	// Bake plans at most one action per entry, boot about two per tool.
	p := &Plan{Mode: req.Mode, Distro: req.Distro.String(), Arch: string(req.Arch), Actions: make([]Action, 0, len(st.Temps)+len(entries)), Record: st.Record.Clone()}
	p.entries = entries
	p.Applicable = len(entries) > 0
	if st.RecordErr != nil {
		p.add(report.Warning, CodeRecordCorrupt, "/"+state.RecordPath, nil, "%v: planned as if empty (every binary is checked against its package again, and the record is rewritten)", st.RecordErr)
	}
	p.forgetGone(entries, st)
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
	if p.intact(e, e.Versioned, st, req) {
		return
	}
	if e.Source != manifest.FromPackage {
		a := base(e)
		a.Path, a.Versioned = e.Versioned, true
		p.fromArtifact(a, e, st, req, "versioned binary missing or not the recorded one")
		return
	}
	a := base(e)
	a.CacheDir, a.Candidates, a.Path, a.Versioned = e.CacheDir, e.BinaryPaths, e.Versioned, true
	pkg, ok := cached(e, st)
	if !ok {
		a.Reason = "versioned binary missing, and no package of it in " + e.CacheDir
		p.fetch(a, e, req, "")
		return
	}
	a.Op, a.PackageFile = Extract, pkg.File
	a.Reason = "versioned binary missing or not the recorded one"
	p.Actions = append(p.Actions, a)
}

// boot follows the decision order of DESIGN.md for each tool, then removes
// the other versions and the caches once every tool is in place.
func (p *Plan) boot(entries []manifest.Entry, st *state.State, req Request) {
	var cleanup []Action
	targets := map[string]bool{} // looked up per versioned file of every tool
	for _, e := range entries {
		targets[e.Target] = true
	}
	for _, tool := range manifest.Tools(entries) {
		e, ok := manifest.Resolve(entries, tool, req.K8sVersion)
		if ok {
			p.bootTool(e, st, req)
		} else if e, ok = p.bootUnlisted(entries, tool, st, req); !ok {
			continue
		}
		for _, v := range st.Versioned[tool] {
			// Validation keeps targets out of the versioned names; a plan
			// never removes one all the same.
			if p.installs(v) || targets[v] {
				continue
			}
			// Only what reconcile wrote is removed: a kubectl plugin, a
			// backup or a directory of a matching name is someone else's.
			if rec, ok := st.Record.Files[v]; !ok || rec.Tool != tool || !st.Files[v].Regular {
				p.add(report.Info, CodeForeignFile, v, nil, "%s is not a binary reconcile wrote (not in the state record): left alone", v)
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
		if (len(st.Cache[e.CacheDir]) > 0 || fetches || p.holdsArtifacts(e.CacheDir, st)) && !req.KeepCache &&
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
	code := CodeDependencyMissing
	if !st.Deps.Checked {
		code = CodeDepsUnchecked
		msg = fmt.Sprintf("the dependencies of %s %s (%s) cannot be checked: %s", a.Package, a.Version, strings.Join(a.Depends, ", "), st.Deps.Why)
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
			a.Package, a.Version, strings.Join(missing, ", "))
	}
	kind := report.Warning
	if req.RequireDeps {
		kind = report.Error
	}
	p.Report.Add(report.Item{Kind: kind, Code: code, Path: a.Path, Tool: a.Tool, Entry: report.EntryIndex(a.Entry), ExitCode: a.ExitCode, Message: msg})
}

func (p *Plan) installs(versioned string) bool {
	return slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Op == Install && a.From == versioned })
}

func (p *Plan) bootTool(e manifest.Entry, st *state.State, req Request) {
	if p.intact(e, e.Target, st, req) {
		return // converged: a second boot plans nothing
	}
	a := base(e)
	a.Path = e.Target
	if !req.EnforcePackage && p.intact(e, e.Versioned, st, req) {
		a.Op, a.From, a.Reason = Install, e.Versioned, "versioned binary matches the bake record"
		a.Depends = st.Record.Files[e.Versioned].Depends
		p.addAction(a, st, req)
		return
	}
	if e.Source != manifest.FromPackage {
		p.fromArtifact(a, e, st, req, "no intact "+e.Versioned)
		return
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
	a.Reason = fmt.Sprintf("neither %s nor a cached package in %s", e.Versioned, e.CacheDir)
	p.fetch(a, e, req, "")
}

// intact reports whether path holds the binary e names, by the state
// record's cheap identity (or the digest with VerifyDigest). When the file
// exists but is not it, a note says so: what it holds is replaced.
func (p *Plan) intact(e manifest.Entry, path string, st *state.State, req Request) bool {
	if _, exists := st.Files[path]; !exists {
		return false // as holds says, without first spelling out what is wanted
	}
	return p.holds(e, path, st, req, func(rec state.Binary) bool { return rec.Of(e.Tool, e.Package, e.Version.String(), string(e.Arch)) },
		state.Describe(e.Tool, e.Package, e.Version.String(), string(e.Arch)))
}

// holds is intact for what the record must say of the binary: of reports
// whether a record entry is the wanted binary, which want describes.
func (p *Plan) holds(e manifest.Entry, path string, st *state.State, req Request, of func(state.Binary) bool, want string) bool {
	f, exists := st.Files[path]
	if !exists {
		return false
	}
	rec, recorded := st.Record.Files[path]
	switch {
	case !recorded:
		p.add(report.Info, CodeNotInRecord, path, &e, "%s exists but is not in the state record: not trusted, replaced", path)
	case !of(rec):
		p.add(report.Info, CodeRecordOther, path, &e, "%s is %s, not %s", path, rec.What(), want)
	case !sameArtifact(e, rec):
		p.add(report.Info, CodeRecordOther, path, &e, "%s came out of %s@%s, not %s", path, rec.Source.Ref, rec.Source.Digest, describeArtifact(e))
	case !rec.Matches(f):
		p.add(report.Info, CodeRecordMismatch, path, &e, "%s does not match the state record (size %d, mtime %s; recorded %d, %s): treated as missing",
			path, f.Size, f.ModTime.UTC().Format("2006-01-02T15:04:05.000000000Z"), rec.Size, rec.ModTime.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	case req.VerifyDigest && f.SHA256 != rec.SHA256:
		p.add(report.Info, CodeRecordMismatch, path, &e, "%s has sha256 %s, the record says %s: treated as missing", path, f.SHA256, rec.SHA256)
	default:
		return true
	}
	return false
}

// cached finds the package for e in its cache dir by the package's own
// metadata, never by its file name.
func cached(e manifest.Entry, st *state.State) (state.Package, bool) {
	for _, pkg := range st.Cache[e.CacheDir] {
		if !pkg.Unopened && pkg.Err == nil && pkg.Name == e.Package && pkgversion.Equal(pkg.Version, e.Version) && pkg.Arch.Runs(e.Arch) {
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
			case pkg.Unopened:
			case pkg.Err != nil:
				p.add(report.Info, CodePackageUnreadable, pkg.File, nil, "ignored %s: %v", pkg.File, pkg.Err)
			case searched[pkg.Name] && !used[pkg.File]:
				p.add(report.Info, CodePackageUnused, pkg.File, nil, "ignored %s: it holds %s=%s (%s), which no entry for %s %s asks for",
					pkg.File, pkg.Name, pkg.Version, pkg.Arch, p.Distro, p.Arch)
			}
		}
	}
}

// forgetGone drops from the plan's record the entries' recorded paths that
// were looked at and are not on disk.
func (p *Plan) forgetGone(entries []manifest.Entry, st *state.State) {
	for _, e := range entries {
		for _, path := range []string{e.Versioned, e.Target} {
			if _, recorded := p.Record.Files[path]; !recorded || slices.Contains(p.Forgotten, path) {
				continue
			}
			if _, exists := st.Files[path]; !exists {
				delete(p.Record.Files, path)
				p.Forgotten = append(p.Forgotten, path)
				p.add(report.Info, CodeRecordEntryGone, path, nil, "%s is in the state record but not on disk: forgotten", path)
			}
		}
	}
}

func base(e manifest.Entry) Action {
	return Action{Tool: e.Tool, Entry: e.Index, Package: e.Package, Version: e.Version, Arch: e.Arch, ExitCode: e.ExitCode}
}

// PackagesNeeded lists the cache dirs whose packages p would use but that
// st holds unopened: the caller observes them and plans again. A boot from
// intact versioned binaries needs none, and opens no package.
func (p *Plan) PackagesNeeded(st *state.State) []string {
	var dirs []string
	for _, a := range p.Actions {
		if a.Op != Extract && a.Op != Fetch || a.Source != "" || slices.Contains(dirs, a.CacheDir) {
			continue
		}
		if slices.ContainsFunc(st.Cache[a.CacheDir], func(pkg state.Package) bool { return pkg.Unopened }) {
			dirs = append(dirs, a.CacheDir)
		}
	}
	return dirs
}
