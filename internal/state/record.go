// Package state observes what is on disk under --root: versioned binaries,
// boot targets, cached packages and the record of what bake produced.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/nodeimage/reconcile/internal/rootfs"
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
	ModTime  time.Time `json:"mtime"`
	Source   Source    `json:"source"`
	Reported string    `json:"reported_version,omitempty"` // first line of its --version output
	Depends  []string  `json:"depends,omitempty"`
}

// Source is the package a binary came out of.
type Source struct {
	File    string `json:"file"` // path of the package, or "fetched with apt-get"
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Entry   string `json:"entry"`  // path inside the package
	Digest  string `json:"digest"` // the digest the package declares for that entry, if any
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

// ErrRecordCorrupt is a record that cannot be read as one: bad JSON, data
// after the JSON, too large, or not a regular file. Callers go on with an
// empty record (everything is re-checked against packages) and say so: a
// broken record never blocks a node.
var ErrRecordCorrupt = errors.New("state record is corrupt")

// maxRecord bounds the record: a thousand binaries take about 1 MB.
const maxRecord = 16 << 20

// LoadRecord reads the record; a missing one is an empty record. A corrupt
// one is an empty record with an error wrapping ErrRecordCorrupt.
func LoadRecord(root *os.Root) (Record, error) {
	rec := Record{Format: RecordFormat, Files: map[string]Binary{}}
	f, err := rootfs.OpenRegular(root, RecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if errors.Is(err, rootfs.ErrNotRegular) {
		return rec, fmt.Errorf("%w: %v", ErrRecordCorrupt, err)
	}
	if err != nil {
		return rec, fmt.Errorf("reading state record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return rec, fmt.Errorf("reading state record /%s: %w", RecordPath, err)
	}
	if len(data) > maxRecord {
		return rec, fmt.Errorf("%w: /%s is larger than %d MiB", ErrRecordCorrupt, RecordPath, maxRecord>>20)
	}
	var got Record
	// Unmarshal, not a Decoder: data after the JSON document is corruption
	// (a torn write, two records glued), never ignored.
	if err := json.Unmarshal(data, &got); err != nil {
		return rec, fmt.Errorf("%w: /%s: %v", ErrRecordCorrupt, RecordPath, err)
	}
	if got.Format != RecordFormat || got.Files == nil {
		return rec, nil
	}
	return got, nil
}

// SaveRecord writes the record atomically.
func SaveRecord(root *os.Root, rec Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	_, err = rootfs.WriteAtomic(root, RecordPath, 0o644, func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("writing state record: %w", err)
	}
	return nil
}
