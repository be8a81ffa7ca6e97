// Package plan diffs the manifest against the observed disk into a plan: an
// ordered list of plain-data actions. It reads no disk and runs no command;
// apply is described entirely by the plan.
package plan

import (
	"fmt"
	"strings"
	"time"
)

// Op is what an action does.
type Op string

const (
	// Extract copies one file out of a cached package to Path.
	Extract Op = "extract"
	// Install renames the versioned binary From onto the boot target Path.
	Install Op = "install"
	// Fetch downloads the package with the distro's package manager into
	// CacheDir, then extracts it to Path.
	Fetch Op = "fetch"
	// Remove deletes the file Path.
	Remove Op = "remove"
	// RemoveCache deletes the package cache directory Path.
	RemoveCache Op = "remove_cache"
)

// Action is one step. Reason is for people; apply never reads it.
type Action struct {
	Op             Op       `json:"op"`
	Tool           string   `json:"tool,omitempty"`
	Entry          int      `json:"entry"` // index in the manifest's components, -1 for none
	Package        string   `json:"package,omitempty"`
	PackageVersion string   `json:"package_version,omitempty"`
	Arch           string   `json:"arch,omitempty"`
	PackageFile    string   `json:"package_file,omitempty"` // Extract: the cached package; "" in a plan with a problem
	Candidates     []string `json:"candidates,omitempty"`   // Extract, Fetch: paths inside the package, first found wins
	From           string   `json:"from,omitempty"`         // Install
	Path           string   `json:"path"`
	CacheDir       string   `json:"cache_dir,omitempty"` // Fetch, Extract
	Manager        string   `json:"manager,omitempty"`   // Fetch
	// Versioned marks an Extract that writes a versioned binary (bake), so
	// apply records it and checks what it says of its version.
	Versioned bool `json:"versioned,omitempty"`
	// VersionArgs make the binary print its version (bake checks it when the
	// binary runs on this host).
	VersionArgs []string `json:"version_args,omitempty"`
	// Depends are the package's dependencies, for the warnings of boot.
	Depends  []string `json:"depends,omitempty"`
	ExitCode int      `json:"exit_code"` // the failure code of the tool this action serves
	Reason   string   `json:"reason,omitempty"`
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

// String is the action's one-line human form.
func (a Action) String() string {
	pv := fmt.Sprintf("%s=%s (%s)", a.Package, a.PackageVersion, a.Arch)
	switch a.Op {
	case Extract:
		from := a.PackageFile
		if from == "" {
			from = "(no such package in " + a.CacheDir + ")"
		}
		return fmt.Sprintf("+ extract %s to %s from %s", pv, a.Path, from)
	case Install:
		return fmt.Sprintf("> install %s %s: rename %s to %s", a.Tool, a.PackageVersion, a.From, a.Path)
	case Fetch:
		return fmt.Sprintf("+ fetch %s with %s into %s, extract to %s", pv, a.Manager, a.CacheDir, a.Path)
	case Remove:
		return fmt.Sprintf("- remove %s", a.Path)
	case RemoveCache:
		return fmt.Sprintf("- remove package cache %s", a.Path)
	}
	return fmt.Sprintf("? %s %s", a.Op, a.Path)
}

// Result is what applying one action did.
type Result struct {
	Action   Action        `json:"action"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"-"`
	Millis   float64       `json:"duration_ms"`
	Size     int64         `json:"size,omitempty"`
	SHA256   string        `json:"sha256,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Error    string        `json:"error,omitempty"`
}

func (r Result) String() string {
	var b strings.Builder
	if r.Error != "" {
		fmt.Fprintf(&b, "FAILED %s: %s", r.Action, r.Error)
	} else {
		fmt.Fprintf(&b, "%s (%s)", r.Action, r.Duration.Round(time.Millisecond))
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "\n    warning: %s", w)
	}
	return b.String()
}
