// Package apply carries out a plan under a root: a loop over its actions.
// It decides nothing the plan did not say.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeimage/reconcile/internal/binver"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgmgr"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// Options are the means apply works with; none of them changes what it does.
type Options struct {
	Root     *os.Root
	Manager  pkgmgr.Manager // for Fetch; nil makes Fetch fail with a clear error
	Logger   *slog.Logger
	Parallel int // concurrent bake extractions; <1 means 1
	Limits   pkgfile.Limits
	Format   platform.Format // the distro's package format, for Fetch
	// Progress, when set, is told how many bytes each extraction wrote and
	// how long it took.
	Progress func(a plan.Action, written int64, took time.Duration)
	// AfterAction, when set, runs after each action: the crash tests stop
	// the process there.
	AfterAction func(a plan.Action)
}

// ActionError is an action that failed; Action.ExitCode is its tool's code.
type ActionError struct {
	Action plan.Action
	Err    error
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("%s: %v", strings.TrimLeft(e.Action.String(), "+>- "), e.Err)
}
func (e *ActionError) Unwrap() error { return e.Err }

// Apply runs the plan's actions in order; consecutive bake extractions run
// in parallel. It stops at the first failure of an ordered action and
// returns what was done so far with an *ActionError (joined, for parallel
// extractions).
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
	rec, err := state.LoadRecord(o.Root)
	// A corrupt record was planned as empty (a warning in the plan): the
	// first action that records rewrites it whole.
	if err != nil && !errors.Is(err, state.ErrRecordCorrupt) {
		return nil, err
	}
	r := &run{o: o, rec: rec}
	var results []result
	for i := 0; i < len(p.Actions); {
		j := i + 1
		if p.Actions[i].Versioned {
			for j < len(p.Actions) && p.Actions[j].Versioned {
				j++
			}
		}
		batch := r.batch(ctx, p.Actions[i:j])
		results = append(results, batch...)
		var errs []error
		for _, res := range batch {
			if res.err != nil {
				errs = append(errs, res.err)
			}
		}
		if len(errs) > 0 {
			return plainResults(results), errors.Join(errs...)
		}
		i = j
	}
	return plainResults(results), nil
}

type result struct {
	plan.Result
	err error
}

func plainResults(rs []result) []plan.Result {
	out := make([]plan.Result, len(rs))
	for i, r := range rs {
		out[i] = r.Result
	}
	return out
}

type run struct {
	o   Options
	mu  sync.Mutex // guards rec and its file
	rec state.Record
}

func (r *run) batch(ctx context.Context, actions []plan.Action) []result {
	out := make([]result, len(actions))
	sem := make(chan struct{}, r.o.Parallel)
	var wg sync.WaitGroup
	for i, a := range actions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = r.one(ctx, a)
		})
	}
	wg.Wait()
	return out
}

func (r *run) one(ctx context.Context, a plan.Action) result {
	start := time.Now()
	res := result{Result: plan.Result{Action: a, Start: start}}
	if res.err = ctx.Err(); res.err == nil {
		res.err = r.do(ctx, a, &res.Result)
	}
	if r.o.AfterAction != nil {
		r.o.AfterAction(a)
	}
	res.Duration = time.Since(start)
	res.Millis = float64(res.Duration.Microseconds()) / 1000
	log := r.o.Logger.With("op", a.Op, "path", a.Path, "duration", res.Duration)
	if res.err != nil {
		// Result.String names the action; Error holds only the cause.
		res.Error = res.err.Error()
		res.err = &ActionError{Action: a, Err: res.err}
		// Info, not Error: the caller reports the failure; this line is
		// the trace --verbose asks for.
		log.Info("action failed", "err", res.err)
	} else {
		log.Info("action done")
	}
	return res
}

func (r *run) do(ctx context.Context, a plan.Action, res *plan.Result) error {
	switch a.Op {
	case plan.Extract:
		return r.extract(ctx, a, a.PackageFile, res)
	case plan.Fetch:
		if r.o.Manager == nil {
			return errors.New("no package manager on this host to fetch with")
		}
		if err := r.o.Root.MkdirAll(rootfs.Rel(a.CacheDir), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", a.CacheDir, err)
		}
		want, err := pkgversion.Parse(r.o.Format, a.PackageVersion)
		if err != nil {
			return err
		}
		arch, err := platform.ParseArch(a.Arch)
		if err != nil {
			return err
		}
		file, err := pkgmgr.Fetch(ctx, r.o.Manager, a.Package, want, arch, r.host(a.CacheDir))
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(r.o.Root.Name(), file)
		if err != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("%s fetched %s, outside %s", r.o.Manager.Name(), file, a.CacheDir)
		}
		return r.extract(ctx, a, "/"+filepath.ToSlash(rel), res)
	case plan.Install:
		return r.install(a)
	case plan.Remove:
		if err := r.o.Root.Remove(rootfs.Rel(a.Path)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return r.forget(a.Path)
	case plan.RemoveCache:
		return r.removeCache(a.Path)
	}
	return fmt.Errorf("unknown action %q", a.Op)
}

// host is the path on this host of a path under the root.
func (r *run) host(p string) string {
	return filepath.Join(r.o.Root.Name(), filepath.FromSlash(rootfs.Rel(p)))
}

func (r *run) extract(ctx context.Context, a plan.Action, pkgPath string, res *plan.Result) error {
	pkg, err := state.OpenPackage(r.o.Root, pkgPath, r.o.Limits)
	if err != nil {
		return err
	}
	// The plan chose this file by its metadata; check again in case the
	// cache changed since.
	want, err := pkgversion.Parse(pkg.Format, a.PackageVersion)
	if err != nil || pkg.Name != a.Package || !pkgversion.Equal(pkg.Version, want) || !pkg.Arch.Runs(platform.Arch(a.Arch)) {
		return fmt.Errorf("%s holds %s=%s (%s), not %s=%s (%s): the cache changed since planning",
			pkgPath, pkg.Name, pkg.Version, pkg.Arch, a.Package, a.PackageVersion, a.Arch)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	// The binary goes to a temp name first: what it is (its ELF machine,
	// its version) is read there, before it can replace the target.
	dest := rootfs.Rel(a.Path)
	stage := path.Join(path.Dir(dest), rootfs.TempPrefix+"stage-"+path.Base(dest))
	entry, written, err := pkg.ExtractTo(r.o.Root, stage, a.Candidates)
	if err != nil {
		return err
	}
	defer r.o.Root.Remove(stage)
	if r.o.Progress != nil {
		r.o.Progress(a, written.Size, time.Since(start))
	}
	var wantVersion *pkgversion.Version
	if a.Versioned {
		wantVersion = &want
	}
	info, err := readBinary(r.o.Root, stage, wantVersion)
	if err != nil {
		return fmt.Errorf("%s in %s (%s=%s): %w", entry.Name, pkgPath, pkg.Name, pkg.Version, err)
	}
	if err := info.CheckArch(platform.Arch(a.Arch)); err != nil {
		built := string(info.Arch)
		if built == "" {
			built = "an unknown machine"
		}
		return fmt.Errorf("%s in %s (%s=%s, labelled %s) is built for %s (%w), not for the entry's %s: nothing installed",
			entry.Name, pkgPath, pkg.Name, pkg.Version, pkg.RawArch, built, err, a.Arch)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rootfs.Rename(r.o.Root, stage, dest); err != nil {
		return err
	}
	res.Size, res.SHA256 = written.Size, written.SHA256
	fi, err := r.o.Root.Lstat(dest)
	if err != nil {
		return err
	}
	b := state.Binary{
		Tool: a.Tool, PackageVersion: a.PackageVersion, Arch: a.Arch,
		Size: written.Size, SHA256: written.SHA256, ModTime: fi.ModTime(),
		Source:  state.Source{File: pkgPath, Name: pkg.Name, Version: pkg.Version.String(), Arch: pkg.RawArch, Entry: entry.Name, Digest: entry.Digest},
		Depends: pkg.Depends,
	}
	if a.Versioned {
		b.Reported = info.Described()
		if info.Version == "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %s (neither its Go build info nor its read-only data names %s)", a.Path, binver.NotReadable, want.Upstream))
		} else if !want.ReportedIn(info.Version) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s names %s in its %s, not the manifest's version %s", a.Path, info.Version, info.From, want.Upstream))
		}
	}
	return r.remember(a.Path, b)
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

// removeCache deletes the packages in a cache dir, and the dir once empty.
// Never a recursive delete: a manifest's cacheDir of /opt by mistake must
// not take /opt/bin with it.
func (r *run) removeCache(dir string) error {
	rel := rootfs.Rel(dir)
	entries, err := fs.ReadDir(r.o.Root.FS(), rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".deb") || strings.HasSuffix(name, ".rpm") || strings.HasPrefix(name, rootfs.TempPrefix)) {
			continue
		}
		if err := r.o.Root.Remove(path.Join(rel, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := r.o.Root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Files that are not packages stay, and so does the dir.
		var pe *fs.PathError
		if !errors.As(err, &pe) || !errors.Is(pe.Err, syscall.ENOTEMPTY) && !errors.Is(pe.Err, syscall.EEXIST) {
			return err
		}
	}
	return rootfs.SyncDir(r.o.Root, rootfs.Rel(path.Dir(dir)))
}

func (r *run) install(a plan.Action) error {
	if err := rootfs.SetOwnerMode(r.o.Root, rootfs.Rel(a.From), 0o755); err != nil {
		return err
	}
	if err := r.o.Root.MkdirAll(rootfs.Rel(path.Dir(a.Path)), 0o755); err != nil {
		return err
	}
	// Record the target before the rename (a rename keeps size and mtime):
	// a crash in between leaves a record that the next boot reads as "target
	// not in place, versioned binary intact" and simply renames again, where
	// the other order would leave an unrecorded target and no versioned
	// binary, and with the cache gone a fetch.
	r.mu.Lock()
	defer r.mu.Unlock()
	b, recorded := r.rec.Files[a.From]
	prev, hadPrev := r.rec.Files[a.Path]
	if recorded {
		r.rec.Files[a.Path] = b
		if err := state.SaveRecord(r.o.Root, r.rec); err != nil {
			return err
		}
	}
	err := rootfs.Rename(r.o.Root, rootfs.Rel(a.From), rootfs.Rel(a.Path))
	if err != nil {
		// The target did not change: neither may its record.
		if hadPrev {
			r.rec.Files[a.Path] = prev
		} else {
			delete(r.rec.Files, a.Path)
		}
		if recorded && errors.Is(err, syscall.EXDEV) {
			if err := r.installByCopy(a, b); err != nil {
				// The record saved before the rename names the target:
				// it must not outlive a copy that never made it.
				return errors.Join(err, state.SaveRecord(r.o.Root, r.rec))
			}
			return nil
		}
		if serr := state.SaveRecord(r.o.Root, r.rec); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	if !recorded {
		return nil
	}
	delete(r.rec.Files, a.From)
	return state.SaveRecord(r.o.Root, r.rec)
}

// installByCopy is install for a target on another filesystem than the
// versioned binary (a separate /var/lib/kubelet mount, where the credential
// provider goes), where no rename can reach: an atomic copy into the
// target's directory, checked against the bake record's digest, then the
// versioned binary removed. A crash before the record is saved leaves the
// versioned binary in place for the next boot to copy again. r.mu is held.
func (r *run) installByCopy(a plan.Action, b state.Binary) error {
	src, err := r.o.Root.Open(rootfs.Rel(a.From))
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
	b.ModTime = fi.ModTime()
	r.rec.Files[a.Path] = b
	if err := state.SaveRecord(r.o.Root, r.rec); err != nil {
		return err
	}
	if err := r.o.Root.Remove(rootfs.Rel(a.From)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	delete(r.rec.Files, a.From)
	return state.SaveRecord(r.o.Root, r.rec)
}

func (r *run) remember(p string, b state.Binary) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Files[p] = b
	return state.SaveRecord(r.o.Root, r.rec)
}

func (r *run) forget(p string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.rec.Files[p]; !ok {
		return nil
	}
	delete(r.rec.Files, p)
	return state.SaveRecord(r.o.Root, r.rec)
}
