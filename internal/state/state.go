package state

import (
	"io/fs"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// State is what is on disk, as plain data: planning needs no disk access.
type State struct {
	// Files holds every path of the query that exists, by absolute path.
	Files map[string]File
	// Versioned lists, per tool, the versioned binaries found in the bin
	// dirs ("/opt/bin/kubelet-1.34.10"), sorted.
	Versioned map[string][]string
	// Cache lists the packages found in each cache dir, by absolute dir.
	Cache map[string][]Package
	// Artifacts lists the downloaded tarballs and OCI manifests found in
	// each cache dir, by absolute dir.
	Artifacts map[string][]Artifact
	// Temps are temp files a killed run left behind.
	Temps  []string
	Record Record
	// RecordErr says why the record on disk could not be read (it wraps
	// ErrRecordCorrupt); Record is then empty.
	RecordErr error
	// Deps says which dependencies of the recorded binaries and cached
	// packages the node lacks (when Query.DepsOf is set).
	Deps Deps
}

// Deps says which dependency strings are unsatisfied. Checked is false
// when the node's package database could not be read (no dpkg status, no
// rpm): then nothing is known to be missing.
type Deps struct {
	Checked bool
	Missing map[string]bool
	Why     string // when !Checked
}

// File is what Lstat says of a path, plus its digest when asked for.
type File struct {
	Regular bool
	Size    int64
	ModTime time.Time
	Mode    fs.FileMode
	SHA256  string
}

// Package is a cached package file and its own metadata, or why it could
// not be read.
type Package struct {
	File string // absolute path under the root
	// Unopened marks a package file listed but not read: observation opens
	// packages only where the plan needs one (a boot from intact versioned
	// binaries opens none).
	Unopened bool
	Name     string
	Version  pkgversion.Version
	Arch     platform.Arch
	Depends  []string
	Err      error
}

// Query says what to look at: observing reads only these.
type Query struct {
	Tools     []string // names whose versioned binaries to list
	BinDirs   []string // where versioned binaries live, absolute
	Paths     []string // files to stat, absolute
	CacheDirs []string // absolute: listed, their packages left unopened
	// Packages are the cache dirs (among CacheDirs) whose packages are
	// opened and read.
	Packages []string
	TempDirs []string // where a killed run may have left temp files, absolute
	Hash     bool     // hash the regular files among Paths
	// DepsOf, when set, checks the dependencies of recorded binaries and
	// cached packages against this package format's database under root.
	DepsOf platform.Format
}

// VersionedTool attributes a file name "<tool>-<digit>…" to the longest
// tool name that fits, so tool "kube" never claims "kube-proxy-1.2": the
// one rule for observation and for manifest validation.
func VersionedTool(name string, tools []string) (string, bool) {
	best := ""
	for _, t := range tools {
		rest, ok := strings.CutPrefix(name, t+"-")
		if ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' && len(t) > len(best) {
			best = t
		}
	}
	return best, best != ""
}
