// Package apply carries out a plan under a root: a loop over its actions.
// It decides nothing the plan did not say: it starts from the record the
// plan was computed from, takes versions and arches typed from the actions,
// and reads the disk only to check what it writes.
package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeimage/reconcile/internal/binver"
	"github.com/nodeimage/reconcile/internal/observe"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgmgr"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/source"
	"github.com/nodeimage/reconcile/internal/state"
)

// Options are the means apply works with; none of them changes what it does.
type Options struct {
	Root     *os.Root
	Manager  pkgmgr.Manager // for Fetch; nil makes Fetch fail with a clear error
	Logger   *slog.Logger
	Parallel int // concurrent bake extractions and fetches; <1 means 1
	Limits   pkgfile.Limits
	// Fetcher downloads artifacts for Download; nil makes Download fail
	// with a clear error.
	Fetcher *source.Fetcher
	// Progress, when set, is told how many bytes each extraction wrote and
	// how long it took (for a Fetch, the download included).
	Progress func(a plan.Action, written int64, took time.Duration)
	// AfterAction, when set, runs after each action: the crash tests stop
	// the process there.
	AfterAction func(a plan.Action)
}

// Reason codes of the warnings of results.
const (
	CodeVersionNotReadable = "version_not_readable" // a baked binary names no version
	CodeVersionMismatch    = "version_mismatch"     // a baked binary names another version
)

// ActionError is an action that failed; Action.ExitCode is its tool's code.
type ActionError struct {
	Action plan.Action
	Err    error
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("%s: %v", strings.TrimLeft(e.Action.String(), "+>- "), e.Err)
}
func (e *ActionError) Unwrap() error { return e.Err }

// Apply runs the plan's actions in order; consecutive bake extractions and
// fetches run in parallel (the downloads one at a time), the biggest cached
// package first, and share one record write after their renames;
// consecutive installs share one record write before their renames and one
// after, and consecutive cache removals unlink at once. It stops at the
// first failure of an ordered action and returns what was done so far with
// an *ActionError (joined, for parallel extractions and cache removals).
func Apply(ctx context.Context, p *plan.Plan, o Options) ([]plan.Result, error) {
	if err := p.Err(); err != nil {
		return nil, err
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &run{o: o, rec: p.Record.Clone(), renames: rootfs.Renames{Root: o.Root}, unsaved: map[string]bool{},
		downloads: map[string]*downloaded{}, verified: map[string]func() (string, error){}}
	if len(p.Forgotten) > 0 {
		if err := observe.SaveRecord(o.Root, r.rec); err != nil {
			return nil, err
		}
	}
	var results []plan.Result
	for i := 0; i < len(p.Actions); {
		j := i + 1
		for j < len(p.Actions) && grouped(p.Actions[i], p.Actions[j]) {
			j++
		}
		var batch []plan.Result
		switch p.Actions[i].Op {
		case plan.Install:
			batch = r.installs(ctx, p.Actions[i:j])
		case plan.Remove:
			batch = r.removes(ctx, p.Actions[i:j])
		case plan.RemoveCache:
			batch = r.removeCaches(ctx, p.Actions[i:j])
		default:
			batch = r.batch(ctx, p.Actions[i:j])
		}
		results = append(results, batch...)
		var errs []error
		for _, res := range batch {
			if res.Err != nil {
				errs = append(errs, &ActionError{Action: res.Action, Err: res.Err})
			}
		}
		if len(errs) > 0 {
			return results, errors.Join(errs...)
		}
		i = j
	}
	return results, nil
}

// grouped reports whether b joins a's group: bake extractions and fetches
// (run in parallel), installs and removes (one record write for the group),
// cache removals (their unlinks overlap).
func grouped(a, b plan.Action) bool {
	return bakeWork(a) && bakeWork(b) || a.Op == b.Op && (a.Op == plan.Install || a.Op == plan.Remove || a.Op == plan.RemoveCache)
}

// bakeWork is what bake runs in parallel: the extractions and fetches of
// versioned binaries, and the downloads they read.
func bakeWork(a plan.Action) bool {
	return a.Versioned || a.Op == plan.Download
}

type run struct {
	o   Options
	mu  sync.Mutex // guards rec and its file, renames and unsaved
	rec state.Record
	// renames and unsaved are what a group of extractions placed: the
	// renames whose directories commit fsyncs, the paths rec names that
	// the record on disk does not yet.
	renames rootfs.Renames
	unsaved map[string]bool

	amu       sync.Mutex // guards downloads and verified
	downloads map[string]*downloaded
	verified  map[string]func() (string, error)
	// fetching serialises the package manager's runs: apt and dnf lock
	// their metadata, and a second concurrent refresh would fail on the
	// lock. Extractions go on meanwhile.
	fetching sync.Mutex
}

// batch runs a group of bake work: each download on a goroutine of its
// own, the extractions and fetches o.Parallel at a time. Those that need no
// download of this run take their turns in the order of longestFirst; an
// extraction from a download waits for it before it queues for a turn.
// The binaries the group placed are recorded once, when all are done
// (commit).
func (r *run) batch(ctx context.Context, actions []plan.Action) []plan.Result {
	out := make([]plan.Result, len(actions))
	r.expectDownloads(actions)
	turns := make(chan struct{}, r.o.Parallel)
	var wg sync.WaitGroup
	// run does actions[i] in a turn taken, and gives the turn back.
	run := func(i int) {
		defer func() { <-turns }()
		out[i] = r.one(ctx, actions[i], r.do)
	}
	for i, a := range actions {
		switch {
		case a.Op == plan.Download:
			wg.Go(func() { out[i] = r.one(ctx, a, r.do) })
		case awaitsDownload(a):
			wg.Go(func() {
				r.awaitDownload(ctx, a)
				turns <- struct{}{}
				run(i)
			})
		}
	}
	for _, i := range r.longestFirst(actions) {
		turns <- struct{}{}
		wg.Go(func() { run(i) })
	}
	wg.Wait()
	r.forgetFailed(out)
	r.commit(out)
	return out
}

// longestFirst orders a batch's fetches and the extractions that need no
// download of this run: the fetches first, in plan order, so that the
// package manager's one-at-a-time downloads start at once; then the
// extractions, the largest package or tarball first (longest processing
// time first: the last to finish are the shortest, so no turn idles long
// while another ends a big one alone).
func (r *run) longestFirst(actions []plan.Action) []int {
	type job struct {
		i    int
		size int64 // a fetch's package is not there yet: it ranks first
	}
	var jobs []job
	for i, a := range actions {
		switch {
		case a.Op == plan.Download || awaitsDownload(a):
		case a.Op == plan.Fetch:
			jobs = append(jobs, job{i: i, size: math.MaxInt64})
		default:
			file := a.PackageFile
			if a.Source != "" {
				file = a.ArtifactFile
			}
			// A size only ranks the work: a file that cannot be
			// stated ranks last, and its extraction says why.
			j := job{i: i}
			if fi, err := r.o.Root.Lstat(rootfs.Rel(file)); err == nil {
				j.size = fi.Size()
			}
			jobs = append(jobs, j)
		}
	}
	slices.SortStableFunc(jobs, func(x, y job) int { return cmp.Compare(y.size, x.size) })
	order := make([]int, len(jobs))
	for k, j := range jobs {
		order[k] = j.i
	}
	return order
}

func (r *run) one(ctx context.Context, a plan.Action, do func(context.Context, plan.Action, *plan.Result) error) plan.Result {
	res := plan.Result{Action: a, Start: time.Now()}
	if res.Err = ctx.Err(); res.Err == nil {
		res.Err = do(ctx, a, &res)
	}
	if r.o.AfterAction != nil {
		r.o.AfterAction(a)
	}
	res.Duration = time.Since(res.Start)
	log := r.o.Logger.With("op", a.Op, "path", a.Path, "duration", res.Duration)
	if res.Err != nil {
		// Info, not Error: the caller reports the failure; this line is
		// the trace --verbose asks for.
		log.Info("action failed", "err", res.Err)
	} else {
		log.Info("action done")
	}
	return res
}

func (r *run) do(ctx context.Context, a plan.Action, res *plan.Result) error {
	switch a.Op {
	case plan.Extract:
		if a.Source != "" {
			return r.extractArtifact(ctx, a, res)
		}
		return r.extract(ctx, a, a.PackageFile, res, time.Now())
	case plan.Download:
		return r.download(ctx, a, res)
	case plan.Fetch:
		start := time.Now()
		rel, err := r.fetch(ctx, &a)
		if err != nil {
			return err
		}
		// The result names the revision fetched, for a NewestOf.
		res.Action = a
		return r.extract(ctx, a, "/"+rel, res, start)
	}
	return fmt.Errorf("unknown action %q", a.Op)
}

// fetch downloads a's package into its cache and returns its root-relative
// path; for a NewestOf it first picks the newest revision offered, and sets
// a.Version to it.
func (r *run) fetch(ctx context.Context, a *plan.Action) (string, error) {
	if r.o.Manager == nil {
		return "", errors.New("no package manager on this host to fetch with")
	}
	r.fetching.Lock()
	defer r.fetching.Unlock()
	if a.NewestOf != "" {
		v, err := pkgmgr.Newest(ctx, r.o.Manager, a.Package, a.NewestOf, a.Arch)
		if err != nil {
			return "", err
		}
		a.Version = v
	}
	return pkgmgr.Fetch(ctx, r.o.Manager, a.Package, a.Version, a.Arch, r.o.Root, a.CacheDir)
}

// extract puts the binary of the package at pkgPath in place; start is
// when the action began, for Progress.
func (r *run) extract(ctx context.Context, a plan.Action, pkgPath string, res *plan.Result, start time.Time) error {
	pkg, err := observe.OpenPackage(r.o.Root, pkgPath, r.o.Limits)
	if err != nil {
		return err
	}
	// The plan chose this file by its metadata; check again in case the
	// cache changed since.
	if pkg.Name != a.Package || !pkgversion.Equal(pkg.Version, a.Version) || !pkg.Arch.Runs(a.Arch) {
		return fmt.Errorf("%s holds %s=%s (%s), not %s=%s (%s): the cache changed since planning",
			pkgPath, pkg.Name, pkg.Version, pkg.Arch, a.Package, a.Version, a.Arch)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stage := stageName(a)
	entry, written, err := pkg.ExtractTo(r.o.Root, stage, a.Candidates)
	if err != nil {
		return err
	}
	defer r.o.Root.Remove(stage)
	return r.place(ctx, a, stage, written, start, staged{
		what:     fmt.Sprintf("%s in %s (%s=%s)", entry.Name, pkgPath, pkg.Name, pkg.Version),
		labelled: fmt.Sprintf("%s in %s (%s=%s, labelled %s)", entry.Name, pkgPath, pkg.Name, pkg.Version, pkg.RawArch),
		source:   state.Source{File: pkgPath, Name: pkg.Name, Version: pkg.Version.String(), Arch: pkg.RawArch, Entry: entry.Name, Digest: entry.Digest},
		depends:  pkg.Depends,
	}, res)
}

// staged is what place says of an extracted binary and records as its
// source.
type staged struct {
	what     string // "./usr/bin/kubelet in /opt/kubelet/downloads/k.deb (kubelet=1.35.7-1)"
	labelled string // what, with the arch its source claims
	source   state.Source
	depends  []string
}

// place checks the binary extracted to stage (its ELF machine, for a
// versioned binary its version), renames it onto a.Path and records it.
// The caller removes stage.
func (r *run) place(ctx context.Context, a plan.Action, stage string, written rootfs.Result, start time.Time, s staged, res *plan.Result) error {
	if r.o.Progress != nil {
		r.o.Progress(a, written.Size, time.Since(start))
	}
	var want *pkgversion.Version
	if a.Versioned {
		want = &a.Version
	}
	info, err := readBinary(r.o.Root, stage, want)
	if err != nil {
		return fmt.Errorf("%s: %w", s.what, err)
	}
	if err := info.CheckArch(a.Arch); err != nil {
		built := string(info.Arch)
		if built == "" {
			built = "an unknown machine"
		}
		return fmt.Errorf("%s is built for %s (%w), not for the entry's %s: nothing installed", s.labelled, built, err, a.Arch)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dest := rootfs.Rel(a.Path)
	if err := r.rename(stage, dest); err != nil {
		return err
	}
	res.Size, res.SHA256 = written.Size, written.SHA256
	fi, err := r.o.Root.Lstat(dest)
	if err != nil {
		return err
	}
	b := state.Binary{
		Tool: a.Tool, PackageVersion: a.PackageVersion(), Arch: string(a.Arch),
		Size: written.Size, SHA256: written.SHA256, ModTime: fi.ModTime(),
		Source: s.source, Depends: s.depends,
	}
	if a.Versioned {
		b.Reported, res.Reported = info.Described(), info.Described()
		warn := func(code, format string, args ...any) {
			res.Warnings.Add(report.Item{Kind: report.Warning, Code: code, Path: a.Path, Tool: a.Tool, Entry: report.EntryIndex(a.Entry), Message: fmt.Sprintf(format, args...)})
		}
		if info.Version == "" {
			warn(CodeVersionNotReadable, "%s: %s (neither its Go build info nor its read-only data names %s)", a.Path, binver.NotReadable, a.Version.Upstream)
		} else if !a.Version.ReportedIn(info.Version) {
			warn(CodeVersionMismatch, "%s names %s in its %s, not the manifest's version %s", a.Path, info.Version, info.From, a.Version.Upstream)
		}
	}
	r.remember(a.Path, b)
	return nil
}

// stageName is where an extraction writes a's binary first: what it is
// (its ELF machine, its version) is read there, before it can replace the
// target.
func stageName(a plan.Action) string {
	dest := rootfs.Rel(a.Path)
	return path.Join(path.Dir(dest), rootfs.TempPrefix+"stage-"+path.Base(dest))
}

// readBinary reads what the binary at name says of itself, without running
// it.
func readBinary(root *os.Root, name string, want *pkgversion.Version) (binver.Info, error) {
	f, err := rootfs.OpenRegular(root, name)
	if err != nil {
		return binver.Info{}, err
	}
	defer f.Close()
	return binver.Read(f, want)
}

// removeCaches deletes the packages in a group of cache dirs, and each dir
// once empty. Never a recursive delete: a manifest's cacheDir of /opt by
// mistake must not take /opt/bin with it. The dirs' packages are unlinked
// at once (most of a boot's time: the file system frees each package's
// blocks), a failure stopping none of the others; each dir's own removal
// and its parent's fsync wait for those of the dirs before it, so nested
// caches end as the plan's order leaves them.
func (r *run) removeCaches(ctx context.Context, actions []plan.Action) []plan.Result {
	out := make([]plan.Result, len(actions))
	turn := make(chan struct{})
	close(turn)
	var wg sync.WaitGroup
	for i, a := range actions {
		mine, done := turn, make(chan struct{})
		turn = done
		wg.Go(func() {
			defer close(done)
			out[i] = r.one(ctx, a, func(context.Context, plan.Action, *plan.Result) error {
				err := r.removePackages(rootfs.Rel(a.Path))
				<-mine
				if err != nil {
					return err
				}
				return r.removeCacheDir(a.Path)
			})
		})
	}
	wg.Wait()
	return out
}

// removePackages deletes the package files (and temp and artifact files)
// of the cache dir rel.
func (r *run) removePackages(rel string) error {
	entries, err := fs.ReadDir(r.o.Root.FS(), rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !observe.IsCacheFile(e) && !observe.IsTemp(e) && !observe.IsArtifactFile(e) {
			continue
		}
		if err := r.o.Root.Remove(path.Join(rel, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// removeCacheDir removes the cache dir when empty, and fsyncs its parent.
func (r *run) removeCacheDir(dir string) error {
	rel := rootfs.Rel(dir)
	if err := r.o.Root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Files that are not packages stay, and so does the dir.
		var pe *fs.PathError
		if !errors.As(err, &pe) || !errors.Is(pe.Err, syscall.ENOTEMPTY) && !errors.Is(pe.Err, syscall.EEXIST) {
			return err
		}
	}
	return rootfs.SyncDir(r.o.Root, rootfs.Rel(path.Dir(dir)))
}

// installs renames versioned binaries onto their targets. The record names
// every target before the first rename (a rename keeps size and mtime), in
// one write: a crash in between leaves a record that the next boot reads as
// "target not in place, versioned binary intact" and simply renames again,
// where the other order would leave an unrecorded target and no versioned
// binary, and with the cache gone a fetch. One more write after the renames
// forgets the versioned names. An install that fails takes its target and
// those of the installs after it out of the record again.
func (r *run) installs(ctx context.Context, actions []plan.Action) []plan.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := map[string]*state.Binary{}
	for _, a := range actions {
		if old, ok := r.rec.Files[a.Path]; ok {
			prev[a.Path] = &old
		} else {
			prev[a.Path] = nil
		}
		if b, ok := r.rec.Files[a.From]; ok {
			r.rec.Files[a.Path] = b
		}
	}
	var out []plan.Result
	if err := observe.SaveRecord(r.o.Root, r.rec); err != nil {
		return []plan.Result{{Action: actions[0], Start: time.Now(), Err: err}}
	}
	failed := -1
	renames := &rootfs.Renames{Root: r.o.Root}
	for i, a := range actions {
		res := r.one(ctx, a, func(context.Context, plan.Action, *plan.Result) error { return r.install(renames, a) })
		out = append(out, res)
		if res.Err != nil {
			failed = i
			break
		}
	}
	// One fsync per directory for all the renames (they share /opt/bin),
	// before the record forgets any versioned name: until it returns a
	// power loss may undo a rename, which the record written before them
	// covers. Should it fail, that record stays.
	if err := renames.Sync(); err != nil {
		if failed < 0 {
			out[len(out)-1].Err = err
		}
		return out
	}
	if failed >= 0 {
		// The targets that did not change: neither may their records.
		for _, a := range actions[failed:] {
			if _, pending := r.rec.Files[a.From]; !pending {
				continue // installed across filesystems: the record is right
			}
			if old := prev[a.Path]; old != nil {
				r.rec.Files[a.Path] = *old
			} else {
				delete(r.rec.Files, a.Path)
			}
		}
	}
	for _, res := range out {
		if res.Err == nil {
			delete(r.rec.Files, res.Action.From)
		}
	}
	if err := observe.SaveRecord(r.o.Root, r.rec); err != nil && failed < 0 {
		out[len(out)-1].Err = err
	}
	return out
}

// install renames one versioned binary onto its target through renames,
// whose Sync makes it durable; r.mu is held.
func (r *run) install(renames *rootfs.Renames, a plan.Action) error {
	if err := rootfs.SetOwnerMode(r.o.Root, rootfs.Rel(a.From), 0o755); err != nil {
		return err
	}
	if err := r.o.Root.MkdirAll(rootfs.Rel(path.Dir(a.Path)), 0o755); err != nil {
		return err
	}
	err := renames.Rename(rootfs.Rel(a.From), rootfs.Rel(a.Path))
	if b, recorded := r.rec.Files[a.From]; recorded && errors.Is(err, syscall.EXDEV) {
		return r.installByCopy(a, b)
	}
	return err
}

// installByCopy is install for a target on another filesystem than the
// versioned binary (a separate /var/lib/kubelet mount, where the credential
// provider goes), where no rename can reach: an atomic copy into the
// target's directory, checked against the bake record's digest, then the
// versioned binary removed. A crash before the record is saved leaves the
// versioned binary in place for the next boot to copy again. r.mu is held.
func (r *run) installByCopy(a plan.Action, b state.Binary) error {
	src, err := rootfs.OpenRegular(r.o.Root, rootfs.Rel(a.From))
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = rootfs.WriteChecked(r.o.Root, rootfs.Rel(a.Path), 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	}, func(got rootfs.Result) error {
		if got.SHA256 != b.SHA256 || got.Size != b.Size {
			return fmt.Errorf("%s changed since bake: sha256 %s (%d bytes), the record says %s (%d bytes)", a.From, got.SHA256, got.Size, b.SHA256, b.Size)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying %s to %s across filesystems: %w", a.From, a.Path, err)
	}
	fi, err := r.o.Root.Lstat(rootfs.Rel(a.Path))
	if err != nil {
		return err
	}
	// The copy has its own mtime: record it before the versioned binary
	// goes, so that the record never names a target that is not there nor
	// loses the binary.
	b.ModTime = fi.ModTime()
	r.rec.Files[a.Path] = b
	if err := observe.SaveRecord(r.o.Root, r.rec); err != nil {
		return err
	}
	if err := r.o.Root.Remove(rootfs.Rel(a.From)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	delete(r.rec.Files, a.From)
	return nil
}

// rename moves a placed binary onto its path; commit makes it durable.
func (r *run) rename(from, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renames.Rename(from, to)
}

// remember names a placed binary in the record; commit writes it.
func (r *run) remember(p string, b state.Binary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Files[p] = b
	r.unsaved[p] = true
}

// commit fsyncs the directories of a batch's renames once, then records
// every binary it placed in one write, where one write per binary (each
// rewriting the whole record, with two fsyncs) made a bake of n entries
// write O(n²) bytes, and each extraction wait for the disk in its turn.
// A crash before the write leaves binaries the record does not name, which
// the next bake extracts again; a crash before the fsync may undo renames,
// which no record claims yet. An error fails every action whose binary it
// leaves unrecorded.
func (r *run) commit(out []plan.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.unsaved) == 0 {
		return
	}
	err := r.renames.Sync()
	if err == nil {
		err = observe.SaveRecord(r.o.Root, r.rec)
	}
	if err != nil {
		for i := range out {
			if out[i].Err == nil && r.unsaved[out[i].Action.Path] {
				out[i].Err = err
			}
		}
	}
	clear(r.unsaved)
}

// removes deletes files, then forgets the recorded ones in one record
// write. A crash in between leaves record entries of files that are gone,
// which nothing acts on; the other order would leave files no record names,
// which boot leaves alone as someone else's.
func (r *run) removes(ctx context.Context, actions []plan.Action) []plan.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []plan.Result
	forgot := false
	for _, a := range actions {
		res := r.one(ctx, a, func(context.Context, plan.Action, *plan.Result) error {
			if err := r.o.Root.Remove(rootfs.Rel(a.Path)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if _, ok := r.rec.Files[a.Path]; ok {
				delete(r.rec.Files, a.Path)
				forgot = true
			}
			return nil
		})
		out = append(out, res)
		if res.Err != nil {
			break
		}
	}
	if forgot {
		if err := observe.SaveRecord(r.o.Root, r.rec); err != nil && out[len(out)-1].Err == nil {
			out[len(out)-1].Err = err
		}
	}
	return out
}
