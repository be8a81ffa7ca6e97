package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/state"
)

// bootUnlisted serves a cluster version that no entry of tool serves, as
// the seed's shell does, when the tool's entries name exact package
// versions (kubelet, kubectl: the package's upstream version is the
// cluster version): the versioned binary the record attributes to that
// upstream version, else the newest revision of it in the cache, else the
// newest revision of it for the node's arch in the repository. The tool's
// settings (package, cache, target, exit code) are its entries'. It
// returns the entry it served by (Index -1: no entry of the manifest), or
// false with a problem when the version cannot be served: the tool names
// no exact version, or RequireManifestVersion.
func (p *Plan) bootUnlisted(entries []manifest.Entry, tool string, st *state.State, req Request) (manifest.Entry, bool) {
	e, servable := manifest.Unlisted(entries, tool, req.K8sVersion)
	served := strings.Join(manifest.Served(entries, tool), ", ")
	if !servable || req.RequireManifestVersion {
		why := "and its entries name no exact package version to serve another by"
		if servable {
			why = "and --require-manifest-version (or requireManifestVersion: true) refuses any other"
		}
		ex := entries[slices.IndexFunc(entries, func(e manifest.Entry) bool { return e.Tool == tool })]
		p.Report.Add(report.Item{Kind: report.Error, Code: CodeVersionMissing, Tool: tool, Entry: report.EntryIndex(-1), ExitCode: ex.ExitCode,
			Message: fmt.Sprintf("no %s entry for %s %s serves Kubernetes %s; the manifest's entries serve %s, %s",
				tool, req.Distro, req.Arch, req.K8sVersion, served, why)})
		return manifest.Entry{}, false
	}
	up := manifest.UpstreamOf(req.K8sVersion)
	p.Report.Add(report.Item{Kind: report.Warning, Code: CodeVersionMissing, Tool: tool, Entry: report.EntryIndex(-1),
		Message: fmt.Sprintf("no %s entry for %s %s serves Kubernetes %s (the manifest's entries serve %s): served from %s if the record attributes it to %s, else by the newest revision of %s %s for %s in %s or the repository",
			tool, req.Distro, req.Arch, req.K8sVersion, served, e.Versioned, up, e.Package, up, e.Arch, e.CacheDir)})

	// The record says which revision a binary came from; any of that
	// upstream version, for this arch, out of the tool's package, serves.
	version := func(rec state.Binary) (pkgversion.Version, bool) {
		v, err := pkgversion.Parse(e.Distro.Format(), rec.PackageVersion)
		return v, err == nil && manifest.SameUpstream(v, up) && rec.Tool == tool && rec.Source.Name == e.Package && rec.Arch == string(e.Arch)
	}
	of := func(rec state.Binary) bool { _, ok := version(rec); return ok }
	want := state.Describe(tool, e.Package, up+" (any revision)", string(e.Arch))
	if p.holds(e, e.Target, st, req, of, want) {
		return e, true // converged: a second boot plans nothing
	}
	a := base(e)
	a.Path = e.Target
	if !req.EnforcePackage && p.holds(e, e.Versioned, st, req, of, want) {
		rec := st.Record.Files[e.Versioned]
		a.Version, _ = version(rec)
		a.Op, a.From, a.Depends = Install, e.Versioned, rec.Depends
		a.Reason = fmt.Sprintf("versioned binary of %s %s in the bake record", tool, up)
		p.addAction(a, st, req)
		return e, true
	}
	a.Candidates = e.BinaryPaths
	if pkg, ok := newestCached(e, up, st); ok {
		a.Op, a.PackageFile, a.CacheDir, a.Version, a.Depends = Extract, pkg.File, e.CacheDir, pkg.Version, pkg.Depends
		a.Reason = fmt.Sprintf("newest cached revision of %s %s", e.Package, up)
		p.addAction(a, st, req)
		return e, true
	}
	a.NewestOf = up
	a.Reason = fmt.Sprintf("neither %s nor a cached package of %s %s in %s", e.Versioned, e.Package, up, e.CacheDir)
	p.fetch(a, e, req, fmt.Sprintf("%s for Kubernetes %s (no entry names it)", tool, req.K8sVersion))
	return e, true
}

// newestCached finds the newest revision of upstream version up of e's
// package for e's arch in its cache, by the packages' own metadata.
func newestCached(e manifest.Entry, up string, st *state.State) (state.Package, bool) {
	var best state.Package
	found := false
	for _, pkg := range st.Cache[e.CacheDir] {
		if pkg.Unopened || pkg.Err != nil || pkg.Name != e.Package || !pkg.Arch.Runs(e.Arch) || !manifest.SameUpstream(pkg.Version, up) {
			continue
		}
		if !found || pkgversion.Compare(pkg.Version, best.Version) > 0 {
			best, found = pkg, true
		}
	}
	return best, found
}
