// Package state is what the disk under --root holds, as plain data: the
// versioned binaries, boot targets, cached packages and the record of what
// bake produced. Planning reads it; package observe fills it from the disk.
package state

import (
	"fmt"
	"time"
)

// RecordPath is the state record, relative to the root.
const RecordPath = "var/lib/reconcile/state.json"

// RecordFormat is the record's schema version; a record of another format is
// treated as absent (everything is re-checked) rather than misread.
const RecordFormat = 1

// Record is what bake produced and boot installed, keyed by absolute path
// ("/opt/bin/kubelet-1.34.10", "/opt/bin/kubelet").
type Record struct {
	Format int               `json:"format"`
	Files  map[string]Binary `json:"files"`
}

// Binary is one file reconcile wrote.
type Binary struct {
	Tool           string `json:"tool"`
	PackageVersion string `json:"package_version"`
	Arch           string `json:"arch"`
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`
	// ModTime is the file's identity for the cheap check at boot, with Size:
	// a rename keeps it, a rewrite changes it, and reading it needs no I/O on
	// the file's data (the first read of a 100 MB binary on a lazily loaded
	// cloud disk costs seconds).
	ModTime time.Time `json:"mtime"`
	Source  Source    `json:"source"`
	// Reported is the version the binary names in its build info or data,
	// and where it was read ("v1.34.10 (build info)"), or "version not
	// readable": bake never runs a binary to ask.
	Reported string   `json:"reported_version,omitempty"`
	Depends  []string `json:"depends,omitempty"`
}

// Source is the package or artifact a binary came out of.
type Source struct {
	File    string `json:"file"` // path of the package, or "fetched with apt-get"
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Entry   string `json:"entry"`  // path inside the package
	Digest  string `json:"digest"` // the digest the package declares for that entry, if any; an artifact's pin
	// Ref is the URL or OCI reference of an artifact (a tarball outside
	// of any package) the binary came out of; File is then the cached
	// tarball and Digest the pin.
	Ref string `json:"ref,omitempty"`
}

// Of reports whether b is tool's binary out of package pkg=version for arch.
func (b Binary) Of(tool, pkg, version, arch string) bool {
	return b.Tool == tool && b.Source.Name == pkg && b.PackageVersion == version && b.Arch == arch
}

// What describes b as Describe does.
func (b Binary) What() string { return Describe(b.Tool, b.Source.Name, b.PackageVersion, b.Arch) }

// Describe names a binary by what Of compares: "kubelet from kubelet=1.35.7-1 (amd64)".
func Describe(tool, pkg, version, arch string) string {
	return fmt.Sprintf("%s from %s=%s (%s)", tool, pkg, version, arch)
}

// Matches reports whether a file on disk is the one recorded, by the cheap
// identity (size and modification time).
func (b Binary) Matches(f File) bool {
	return f.Regular && f.Size == b.Size && f.ModTime.Equal(b.ModTime)
}

// Clone is a copy of r that shares nothing with it.
func (r Record) Clone() Record {
	c := Record{Format: r.Format, Files: make(map[string]Binary, len(r.Files))}
	for p, b := range r.Files {
		b.Depends = append([]string(nil), b.Depends...)
		c.Files[p] = b
	}
	return c
}
