package manifest

import (
	"fmt"
	"path"
	"slices"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/pkgversion"
)

// Unlisted is the entry by which tool serves cluster version v when none of
// its entries serve v (Resolve found none), as the seed's shell serves any
// version: only a tool whose entries name exact package versions (kubelet,
// kubectl, whose package's upstream version is the cluster version) can,
// and it keeps their package, cache, target and exit code. The entry has
// Index -1, no package version (the revision is chosen from what the disk
// or the repository holds), and the versioned name of v's upstream version
// (UpstreamOf).
func Unlisted(entries []Entry, tool string, v *semver.Version) (Entry, bool) {
	i := slices.IndexFunc(entries, func(e Entry) bool { return e.Tool == tool && e.Exact() && e.Source == FromPackage })
	if i < 0 {
		return Entry{}, false
	}
	e := entries[i]
	e.Index, e.Version, e.K8s, e.serve = -1, pkgversion.Version{}, "", serving{}
	e.Versioned = path.Join(BinDir, tool+"-"+UpstreamOf(v))
	return e, true
}

// UpstreamOf is the package upstream version of a cluster version:
// 1.35.0-rc.1 is packaged as 1.35.0~rc.1, which sorts before 1.35.0.
func UpstreamOf(v *semver.Version) string {
	up := fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Patch())
	if v.Prerelease() != "" {
		up += "~" + v.Prerelease()
	}
	return up
}

// SameUpstream reports whether package version v's upstream version is up,
// by dpkg/rpm rules: 1.34.01-3 is of 1.34.1, 1.34.10-1 is not.
func SameUpstream(v pkgversion.Version, up string) bool {
	return pkgversion.Equal(v, pkgversion.Version{Format: v.Format, Epoch: v.Epoch, Upstream: up, Revision: v.Revision})
}
