package plan

import (
	"cmp"
	"fmt"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/report"
)

// fetch plans a, a bake or boot step whose package is not in e's cache, as a
// Fetch with the distro's package manager. When the run may not fetch
// (Offline) or cannot (no package manager), it plans the problem that says
// so instead, with a as an extraction of no package, so that the plan still
// shows what was looked for and where; who names the entry in the message
// ("" for e.ID(), spelt out only then).
func (p *Plan) fetch(a Action, e manifest.Entry, req Request, who string) {
	a.CacheDir = e.CacheDir
	var code, why string
	switch {
	case req.Offline:
		code, why = CodePackageMissing, "--offline forbids fetching it"
	case req.Manager == "":
		code, why = CodeNoPackageManager, "it cannot be fetched: "+cmp.Or(req.NoManager, fmt.Sprintf("no package manager for %s packages", req.Distro.Format()))
	default:
		a.Op, a.Manager = Fetch, req.Manager
		if req.Mode == Boot && req.RequireDeps {
			p.add(report.Warning, CodeDepsCheckedAtFetch, e.Target, &e, "the dependencies of %s %s are not checked: it is fetched at boot, after planning", a.Package, a.version())
		}
		p.Actions = append(p.Actions, a)
		return
	}
	if who == "" {
		who = e.ID()
	}
	p.add(report.Error, code, e.CacheDir, &e, "%s: no package %s=%s (%s) in %s, and %s", who, a.Package, a.version(), a.Arch, e.CacheDir, why)
	if req.Mode == Bake {
		// At bake a failure is the run's, not the tool's.
		p.Report[len(p.Report)-1].ExitCode = 1
	}
	a.Op = Extract
	p.Actions = append(p.Actions, a)
}

// version is the package version a names, or the rule that will choose it.
func (a Action) version() string {
	if a.NewestOf != "" && a.Version.Format == "" {
		return "newest revision of " + a.NewestOf
	}
	return a.PackageVersion()
}
