// Package observe reads the disk under a root into a state.State — and,
// for the state record and the lock, is the one place that touches those
// files. Planning never imports it.
package observe

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

	"github.com/nodeimage/reconcile/internal/deps"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// Observe reads the disk under root: the record, the paths of q, the bin,
// cache and temp dirs, and the packages of q.Packages.
func Observe(ctx context.Context, root *os.Root, q state.Query) (*state.State, error) {
	st := &state.State{Files: map[string]state.File{}, Versioned: map[string][]string{}, Cache: map[string][]state.Package{}}
	var err error
	st.Record, err = LoadRecord(root)
	if errors.Is(err, ErrRecordCorrupt) {
		st.RecordErr, err = err, nil
	}
	if err != nil {
		return nil, err
	}
	dirs := map[string]queriedDir{}
	defer func() {
		for _, d := range dirs {
			if d.root != nil {
				d.root.Close()
			}
		}
	}()
	for _, p := range q.Paths {
		f, err := statQueried(root, dirs, p, q.Hash)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		st.Files[p] = f
	}
	l := &listings{root: root, read: map[string][]fs.DirEntry{}}
	for _, dir := range q.BinDirs {
		if err := listBinDir(st, l, dir, q.Tools); err != nil {
			return nil, err
		}
	}
	for _, dir := range q.CacheDirs {
		if err := listCache(st, l, dir); err != nil {
			return nil, err
		}
		if err := listArtifacts(st, l, dir); err != nil {
			return nil, err
		}
	}
	for _, dir := range q.TempDirs {
		if err := listTemps(st, l, dir); err != nil {
			return nil, err
		}
	}
	return st, OpenPackages(ctx, root, st, q.Packages, q.DepsOf)
}

// OpenPackages reads the packages listed in the cache dirs dirs of st, then
// (when depsOf is set) checks the dependencies of the recorded binaries and
// the opened packages against that format's database under root.
func OpenPackages(ctx context.Context, root *os.Root, st *state.State, dirs []string, depsOf platform.Format) error {
	for _, dir := range dirs {
		for i, pkg := range st.Cache[dir] {
			if !pkg.Unopened {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			st.Cache[dir][i] = openCached(root, pkg.File)
		}
	}
	if depsOf == "" {
		return nil
	}
	var err error
	st.Deps, err = deps.Check(ctx, root, depsOf, allDeps(st))
	return err
}

func allDeps(st *state.State) []string {
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

// stat reads the file name (relative to root) and, with hash, its sha256.
func stat(root *os.Root, name string, hash bool) (state.File, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return state.File{}, err
	}
	f := state.File{Regular: fi.Mode().IsRegular(), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
	if hash && f.Regular {
		res, err := rootfs.DigestFile(root, name)
		if err != nil {
			return state.File{}, err
		}
		f.SHA256 = res.SHA256
	}
	return f, nil
}

// queriedDir is the directory of queried paths, opened once: absent when
// it is not there, root nil when it could not be opened.
type queriedDir struct {
	root   *os.Root
	absent bool
}

// statQueried is stat of p (absolute, under root) through its directory,
// opened once per observation in dirs: one fstatat per path, where a walk
// from the root was five system calls, and a dry-run of 1,000 entries has
// a thousand paths in /opt/bin. A directory that is not there holds none
// of its paths; one that cannot be opened (not a directory, a link out of
// the root) is left to the root's stat of each path, and its error.
func statQueried(root *os.Root, dirs map[string]queriedDir, p string, hash bool) (state.File, error) {
	dir := path.Dir(p)
	d, known := dirs[dir]
	if !known {
		sub, err := root.OpenRoot(rootfs.Rel(dir))
		d = queriedDir{root: sub, absent: errors.Is(err, fs.ErrNotExist)}
		dirs[dir] = d
	}
	switch {
	case d.absent:
		return state.File{}, fs.ErrNotExist
	case d.root == nil || hash:
		// Hashing reads the whole file: its error names the path from
		// the root, and one walk more is nothing beside it.
		return stat(root, rootfs.Rel(p), hash)
	}
	f, err := stat(d.root, path.Base(p), hash)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = rootfs.Rel(p) // as the root's stat names it
	}
	return f, err
}

// listings reads each directory once per observation: /opt/bin is the bin
// dir and a temp dir, a cache dir is listed for packages and for artifacts.
type listings struct {
	root *os.Root
	read map[string][]fs.DirEntry
}

func (l *listings) readDir(dir string) ([]fs.DirEntry, error) {
	if entries, ok := l.read[dir]; ok {
		return entries, nil
	}
	entries, err := readDir(l.root, dir)
	if err == nil {
		l.read[dir] = entries
	}
	return entries, err
}

// IsTemp reports whether name (a directory entry) is a temp file a run of
// reconcile left: its prefix, and a regular file. A directory, FIFO or link
// of that name is someone else's (removing a directory would fail every run).
func IsTemp(e fs.DirEntry) bool {
	return strings.HasPrefix(e.Name(), rootfs.TempPrefix) && e.Type().IsRegular()
}

// IsCacheFile reports whether a directory entry of a package cache is a
// package file reconcile reads and removes: a regular *.deb or *.rpm that
// is no temp file. A directory named *.deb is not one (cache removal would
// never delete it, and counting it would plan its removal every boot).
func IsCacheFile(e fs.DirEntry) bool {
	name := e.Name()
	return !e.IsDir() && !strings.HasPrefix(name, rootfs.TempPrefix) &&
		(strings.HasSuffix(name, ".deb") || strings.HasSuffix(name, ".rpm"))
}

// readDir lists dir (absolute, under root); a dir that is not there lists
// nothing (a nil slice, where an empty dir gives an empty one).
func readDir(root *os.Root, dir string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(root.FS(), rootfs.Rel(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	if entries == nil {
		entries = []fs.DirEntry{}
	}
	return entries, nil
}

// listTemps finds the temp files a killed run left in dir.
func listTemps(st *state.State, l *listings, dir string) error {
	entries, err := l.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if IsTemp(e) {
			st.Temps = append(st.Temps, path.Join(dir, e.Name()))
		}
	}
	return nil
}

// listBinDir attributes the versioned names in dir to their tools (see
// state.VersionedTool).
func listBinDir(st *state.State, l *listings, dir string, tools []string) error {
	entries, err := l.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		t, ok := state.VersionedTool(e.Name(), tools)
		if !ok {
			continue
		}
		p := path.Join(dir, e.Name())
		st.Versioned[t] = append(st.Versioned[t], p)
		if _, seen := st.Files[p]; !seen {
			f, err := stat(l.root, rootfs.Rel(p), false)
			if err != nil {
				return err
			}
			st.Files[p] = f
		}
	}
	return nil
}

// listCache lists the package files of dir, unopened.
func listCache(st *state.State, l *listings, dir string) error {
	entries, err := l.readDir(dir)
	if err != nil {
		return err
	}
	if entries == nil {
		st.Cache[dir] = nil
		return nil
	}
	pkgs := []state.Package{}
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		switch {
		case !IsCacheFile(e):
		case !e.Type().IsRegular():
			pkgs = append(pkgs, state.Package{File: p, Err: fmt.Errorf("%s is not a regular file", p)})
		default:
			pkgs = append(pkgs, state.Package{File: p, Unopened: true})
		}
	}
	st.Cache[dir] = pkgs
	return nil
}

// openCached reads a cached package's own metadata. One that cannot be
// read is kept with its error: planning says why it was not used.
func openCached(root *os.Root, p string) state.Package {
	pkg, err := OpenPackage(root, p, pkgfile.DefaultLimits)
	if err != nil {
		return state.Package{File: p, Err: err}
	}
	return state.Package{File: p, Name: pkg.Name, Version: pkg.Version, Arch: pkg.Arch, Depends: pkg.Depends}
}

// OpenPackage opens the package at p (absolute, under root) with limits:
// the one place reconcile opens a package file. It goes through the root,
// so a cache path that a user swapped for a symlink out of it, or a FIFO,
// is refused, never followed or waited on.
func OpenPackage(root *os.Root, p string, l pkgfile.Limits) (*pkgfile.Package, error) {
	return pkgfile.OpenIn(root, rootfs.Rel(p), l)
}

// HostPath is the path on this host of p (absolute, under root), for what
// must be named by host path (a package opened by path, a command's
// executable).
func HostPath(root *os.Root, p string) string {
	return filepath.Join(root.Name(), filepath.FromSlash(rootfs.Rel(p)))
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
