package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/deps"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
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
	// Temps are temp files a killed run left behind.
	Temps  []string
	Record Record
	// RecordErr says why the record on disk could not be read (it wraps
	// ErrRecordCorrupt); Record is then empty.
	RecordErr error
	// Deps says which dependencies of the recorded binaries and cached
	// packages the node lacks (when Query.DepsOf is set).
	Deps deps.Result
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
	File    string // absolute path under the root
	Name    string
	Version pkgversion.Version
	Arch    platform.Arch
	Depends []string
	Err     error
}

// Query says what to look at: observing reads only these.
type Query struct {
	Tools     []string // names whose versioned binaries to list
	BinDirs   []string // where versioned binaries live, absolute
	Paths     []string // files to stat, absolute
	CacheDirs []string // absolute
	TempDirs  []string // where a killed run may have left temp files, absolute
	Hash      bool     // hash the regular files among Paths
	// DepsOf, when set, checks the dependencies of recorded binaries and
	// cached packages against this package format's database under root.
	DepsOf platform.Format
}

// Observe reads the disk under root.
func Observe(ctx context.Context, root *os.Root, q Query) (*State, error) {
	st := &State{Files: map[string]File{}, Versioned: map[string][]string{}, Cache: map[string][]Package{}}
	var err error
	st.Record, err = LoadRecord(root)
	if errors.Is(err, ErrRecordCorrupt) {
		st.RecordErr, err = err, nil
	}
	if err != nil {
		return nil, err
	}
	for _, p := range q.Paths {
		f, err := stat(root, p, q.Hash)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		st.Files[p] = f
	}
	for _, dir := range q.BinDirs {
		if err := st.listBinDir(root, dir, q.Tools); err != nil {
			return nil, err
		}
	}
	for _, dir := range q.CacheDirs {
		if err := st.listCache(root, dir); err != nil {
			return nil, err
		}
	}
	for _, dir := range q.TempDirs {
		if err := st.listTemps(root, dir); err != nil {
			return nil, err
		}
	}
	if q.DepsOf != "" {
		if st.Deps, err = deps.Check(ctx, root, q.DepsOf, st.allDeps()); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *State) allDeps() []string {
	var all []string
	for _, b := range st.Record.Files {
		all = append(all, b.Depends...)
	}
	for _, pkgs := range st.Cache {
		for _, p := range pkgs {
			all = append(all, p.Depends...)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

func stat(root *os.Root, p string, hash bool) (File, error) {
	fi, err := root.Lstat(rootfs.Rel(p))
	if err != nil {
		return File{}, err
	}
	f := File{Regular: fi.Mode().IsRegular(), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
	if hash && f.Regular {
		res, err := rootfs.DigestFile(root, rootfs.Rel(p))
		if err != nil {
			return File{}, err
		}
		f.SHA256 = res.SHA256
	}
	return f, nil
}

// listTemps finds the temp files a killed run left in dir.
func (st *State) listTemps(root *os.Root, dir string) error {
	entries, err := fs.ReadDir(root.FS(), rootfs.Rel(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		// Only a regular file is ours: a directory, FIFO or link of that
		// name is left alone (removing a directory would fail every run).
		if strings.HasPrefix(e.Name(), rootfs.TempPrefix) && e.Type().IsRegular() {
			st.Temps = append(st.Temps, path.Join(dir, e.Name()))
		}
	}
	return nil
}

// listBinDir attributes "<tool>-<digit>…" files to the longest tool name that
// fits, so tool "kube" never claims "kube-proxy-1.2".
func (st *State) listBinDir(root *os.Root, dir string, tools []string) error {
	entries, err := fs.ReadDir(root.FS(), rootfs.Rel(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	byLength := slices.Clone(tools)
	slices.SortFunc(byLength, func(a, b string) int { return len(b) - len(a) })
	for _, e := range entries {
		name := e.Name()
		for _, t := range byLength {
			rest, ok := strings.CutPrefix(name, t+"-")
			if ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
				p := path.Join(dir, name)
				st.Versioned[t] = append(st.Versioned[t], p)
				if _, seen := st.Files[p]; !seen {
					f, err := stat(root, p, false)
					if err != nil {
						return err
					}
					st.Files[p] = f
				}
				break
			}
		}
	}
	return nil
}

// listCache reads the metadata of every .deb and .rpm in dir. A package that
// cannot be read is kept with its error: planning says why it was not used.
func (st *State) listCache(root *os.Root, dir string) error {
	entries, err := fs.ReadDir(root.FS(), rootfs.Rel(dir))
	if errors.Is(err, fs.ErrNotExist) {
		st.Cache[dir] = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing package cache %s: %w", dir, err)
	}
	pkgs := []Package{}
	for _, e := range entries {
		name := e.Name()
		p := path.Join(dir, name)
		if strings.HasPrefix(name, rootfs.TempPrefix) {
			continue
		}
		// A directory named *.deb is not a package, and cache removal would
		// never delete it: counting it would plan its removal every boot.
		if e.IsDir() || !strings.HasSuffix(name, ".deb") && !strings.HasSuffix(name, ".rpm") {
			continue
		}
		if !e.Type().IsRegular() {
			pkgs = append(pkgs, Package{File: p, Err: fmt.Errorf("%s is not a regular file", p)})
			continue
		}
		pkg, err := OpenPackage(root, p, pkgfile.DefaultLimits)
		if err != nil {
			pkgs = append(pkgs, Package{File: p, Err: err})
			continue
		}
		pkgs = append(pkgs, Package{File: p, Name: pkg.Name, Version: pkg.Version, Arch: pkg.Arch, Depends: pkg.Depends})
	}
	st.Cache[dir] = pkgs
	return nil
}

// OpenPackage opens the package at p (absolute, under root) with limits:
// the one place reconcile opens a package file.
func OpenPackage(root *os.Root, p string, l pkgfile.Limits) (*pkgfile.Package, error) {
	return pkgfile.OpenLimits(filepath.Join(root.Name(), filepath.FromSlash(rootfs.Rel(p))), l)
}

// DetectDistro reads etc/os-release (or usr/lib/os-release) under root.
func DetectDistro(root *os.Root) (platform.Distro, error) {
	var firstErr error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		f, err := rootfs.OpenRegular(root, p)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		d, err := platform.ReadOSRelease(f)
		f.Close()
		if err != nil {
			return d, fmt.Errorf("/%s: %w", p, err)
		}
		return d, nil
	}
	return platform.Distro{}, fmt.Errorf("cannot tell the distro (pass --distro): %w", firstErr)
}
