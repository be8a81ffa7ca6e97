// Package plan diffs the manifest against the observed disk into a plan: an
// ordered list of plain-data actions. It reads no disk and runs no command;
// apply is described entirely by the plan.
package plan

import (
	"fmt"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/report"
)

// Op is what an action does.
type Op string

const (
	// Extract copies one file out of a cached package to Path.
	Extract Op = "extract"
	// Install renames the versioned binary From onto the boot target Path.
	Install Op = "install"
	// Fetch downloads the package with the distro's package manager into
	// CacheDir, then extracts it to Path: exactly Version, or with NewestOf
	// the newest revision of that upstream version the repositories offer
	// for Arch, chosen at apply.
	Fetch Op = "fetch"
	// Remove deletes the file Path.
	Remove Op = "remove"
	// RemoveCache deletes the package cache directory Path.
	RemoveCache Op = "remove_cache"
	// Download fetches the pinned artifact Ref@Digest (a tarball from a
	// URL, or an OCI artifact's tarball layer) into CacheDir, verified
	// before it gets its name there; the Extracts after it read it.
	Download Op = "download"
)

// Action is one step. Reason is for people; apply never reads it.
type Action struct {
	Op      Op
	Tool    string
	Entry   int // index in the manifest's components, -1 for none
	Package string
	Version pkgversion.Version // the package version, typed: apply parses nothing
	Arch    platform.Arch
	// PackageFile is the cached package of an Extract; "" in a plan with a
	// problem.
	PackageFile string
	Candidates  []string // Extract, Fetch: paths inside the package, first found wins
	From        string   // Install
	Path        string
	CacheDir    string // Fetch, Extract
	Manager     string // Fetch
	// NewestOf is the upstream version of a Fetch for a cluster version no
	// entry names ("1.34.1"): Version is empty in the plan, and apply
	// fetches the newest revision of it for Arch.
	NewestOf string
	// Versioned marks an Extract or Fetch that writes a versioned binary (bake): apply
	// records it with the version read from the binary.
	Versioned bool
	// Depends are the package's dependencies, for the warnings of boot.
	Depends []string
	// Source is where a Download or an Extract takes the binary from: ""
	// for a package, manifest.FromURL or FromOCI for an artifact, which
	// Ref and Digest pin. ArtifactFile is an Extract's cached tarball; ""
	// when a Download of the same run brings it.
	Source       manifest.SourceKind
	Ref          string
	Digest       string
	ArtifactFile string

	ExitCode int // the failure code of the tool this action serves
	Reason   string
}

// PackageVersion is the version as the package writes it.
func (a Action) PackageVersion() string {
	if a.Version.Format == "" {
		return ""
	}
	return a.Version.String()
}

// Task is the action's stable name in provisioning events:
// "reconcile.boot.install.kubelet".
func (a Action) Task(mode Mode) string {
	subject := a.Tool
	if subject == "" {
		subject = "tempfile"
	}
	return fmt.Sprintf("reconcile.%s.%s.%s", mode, a.Op, subject)
}

// String is the action's one-line human form. Concatenation, not fmt: a
// dry-run prints one line per entry.
func (a Action) String() string {
	switch {
	case a.Op == Download:
		return "+ download " + string(a.Source) + " " + a.Ref + "@" + a.Digest + " into " + a.CacheDir
	case a.Op == Extract && a.Source != "":
		return "+ extract " + a.Tool + " " + a.Version.Upstream + " from " + a.artifactFrom() + " (" + strings.Join(a.Candidates, ", ") + ") to " + a.Path
	}
	switch a.Op {
	case Extract:
		from := a.PackageFile
		if from == "" {
			from = "(no such package in " + a.CacheDir + ")"
		}
		return "+ extract " + a.packageVersionArch() + " to " + a.Path + " from " + from
	case Install:
		return "> install " + a.Tool + " " + a.PackageVersion() + ": rename " + a.From + " to " + a.Path
	case Fetch:
		return "+ fetch " + a.packageVersionArch() + " with " + a.Manager + " into " + a.CacheDir + ", extract to " + a.Path
	case Remove:
		return "- remove " + a.Path
	case RemoveCache:
		return "- remove package cache " + a.Path
	}
	return "? " + string(a.Op) + " " + a.Path
}

// packageVersionArch is "kubelet=1.35.7-1 (amd64)".
func (a Action) packageVersionArch() string {
	return a.Package + "=" + a.version() + " (" + string(a.Arch) + ")"
}

// Result is what applying one action did.
type Result struct {
	Action   Action
	Start    time.Time
	Duration time.Duration
	Size     int64
	SHA256   string
	// Reported is the version read from a baked binary, or
	// binver.NotReadable.
	Reported string
	Warnings report.Report
	Err      error
}

// Summary counts actions by op: "2 to extract, 1 to remove".
func Summary(actions []Action) string {
	counts := map[Op]int{}
	for _, a := range actions {
		counts[a.Op]++
	}
	var parts []string
	for _, op := range []Op{Download, Extract, Install, Fetch, Remove, RemoveCache} {
		if counts[op] > 0 {
			parts = append(parts, fmt.Sprintf("%d to %s", counts[op], strings.ReplaceAll(string(op), "_", " ")))
		}
	}
	return strings.Join(parts, ", ")
}
