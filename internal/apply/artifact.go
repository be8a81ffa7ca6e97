package apply

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/source"
	"github.com/nodeimage/reconcile/internal/state"
)

// downloaded is what one Download of the run brought: the Extracts of
// that artifact wait for done and read rel.
type downloaded struct {
	done  chan struct{}
	rel   string // the tarball, relative to the root
	err   error
	fresh bool // downloaded by this run, not found cached
	// forgotten: an extraction from it failed and its files were removed.
	forgotten bool
}

func key(a plan.Action) string { return a.Ref + "@" + a.Digest }

func artifactOf(a plan.Action) source.Artifact {
	kind := source.URL
	if a.Source == manifest.FromOCI {
		kind = source.OCI
	}
	return source.Artifact{Kind: kind, Ref: a.Ref, Digest: a.Digest}
}

// expectDownloads registers the batch's downloads before any of its
// actions starts, so that an extraction finds the download it must wait
// for.
func (r *run) expectDownloads(actions []plan.Action) {
	r.amu.Lock()
	defer r.amu.Unlock()
	for _, a := range actions {
		if _, ok := r.downloads[key(a)]; a.Op == plan.Download && !ok {
			r.downloads[key(a)] = &downloaded{done: make(chan struct{})}
		}
	}
}

func (r *run) downloadOf(a plan.Action) *downloaded {
	r.amu.Lock()
	defer r.amu.Unlock()
	return r.downloads[key(a)]
}

// awaitsDownload reports whether a is an extraction from an artifact that
// a Download of the run brings.
func awaitsDownload(a plan.Action) bool {
	return a.Op == plan.Extract && a.Source != "" && a.ArtifactFile == ""
}

// awaitDownload returns once the download an artifact Extract reads is
// done (or ctx ends); at once for any other action.
func (r *run) awaitDownload(ctx context.Context, a plan.Action) {
	if !awaitsDownload(a) {
		return
	}
	if d := r.downloadOf(a); d != nil {
		select {
		case <-d.done:
		case <-ctx.Done():
		}
	}
}

// download fetches a's artifact into its cache dir; source.Fetch verifies
// it against the pin before it gets its name there.
func (r *run) download(ctx context.Context, a plan.Action, res *plan.Result) error {
	d := r.downloadOf(a)
	defer close(d.done)
	d.err = func() error {
		if r.o.Fetcher == nil {
			return errors.New("no downloader configured for this run")
		}
		art, dir := artifactOf(a), rootfs.Rel(a.CacheDir)
		rel, err := source.Cached(r.o.Root, dir, art)
		if err == nil {
			d.rel = rel
			return nil
		}
		if !errors.Is(err, source.ErrNotCached) {
			return err
		}
		start := time.Now()
		if d.rel, err = r.o.Fetcher.Fetch(ctx, art, r.o.Root, dir); err != nil {
			return err
		}
		d.fresh = true
		if fi, err := r.o.Root.Lstat(d.rel); err == nil {
			res.Size = fi.Size()
			if r.o.Progress != nil {
				r.o.Progress(a, fi.Size(), time.Since(start))
			}
		}
		return nil
	}()
	return d.err
}

// tarball is the verified cached tarball a's extraction reads, relative
// to the root: the one this run downloaded, or the cached one the plan
// named, checked against the pin once per run.
func (r *run) tarball(ctx context.Context, a plan.Action) (string, error) {
	if a.ArtifactFile == "" {
		d := r.downloadOf(a)
		if d == nil {
			return "", fmt.Errorf("the plan downloads %s@%s nowhere before this extraction", a.Ref, a.Digest)
		}
		select {
		case <-d.done:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if d.err != nil {
			// The download's own result says why.
			return "", errors.New("not extracted: the download failed")
		}
		return d.rel, nil
	}
	dir := path.Dir(a.ArtifactFile)
	r.amu.Lock()
	check, ok := r.verified[key(a)+" "+dir]
	if !ok {
		check = sync.OnceValues(func() (string, error) { return source.Cached(r.o.Root, rootfs.Rel(dir), artifactOf(a)) })
		r.verified[key(a)+" "+dir] = check
	}
	r.amu.Unlock()
	rel, err := check()
	if err != nil {
		return "", fmt.Errorf("checking the cached artifact (remove it to download it again): %w", err)
	}
	if "/"+rel != a.ArtifactFile {
		return "", fmt.Errorf("the cache changed since planning: the artifact is /%s, the plan read %s", rel, a.ArtifactFile)
	}
	return rel, nil
}

// extractArtifact extracts a's binary out of its artifact's tarball with
// the hardened tar reader, then checks and records it as a package's.
func (r *run) extractArtifact(ctx context.Context, a plan.Action, res *plan.Result) error {
	rel, err := r.tarball(ctx, a)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	tb, err := pkgfile.OpenTarball(r.o.Root, rel, r.o.Limits)
	if err != nil {
		return err
	}
	stage := stageName(a)
	entry, written, err := tb.ExtractTo(r.o.Root, stage, a.Candidates[0])
	if err != nil {
		return err
	}
	defer r.o.Root.Remove(stage)
	what := fmt.Sprintf("%s in %s (%s %s@%s)", entry.Name, tb.Path, a.Source, a.Ref, a.Digest)
	return r.place(ctx, a, stage, written, start, staged{
		what: what, labelled: what,
		source: state.Source{File: tb.Path, Name: a.Package, Version: a.Version.Upstream, Arch: string(a.Arch),
			Entry: entry.Name, Digest: a.Digest, Ref: a.Ref},
	}, res)
}

// forgetFailed removes the downloads of this run that an extraction
// failed to use (a hostile or broken tarball that matched its pin): a
// failed run leaves nothing new in the cache.
func (r *run) forgetFailed(results []plan.Result) {
	for _, res := range results {
		a := res.Action
		if res.Err == nil || a.Op != plan.Extract || a.Source == "" || a.ArtifactFile != "" {
			continue
		}
		d := r.downloadOf(a)
		if d == nil || !d.fresh || d.forgotten {
			continue
		}
		d.forgotten = true
		if err := source.Forget(r.o.Root, rootfs.Rel(a.CacheDir), artifactOf(a)); err != nil {
			r.o.Logger.Warn("removing a download that failed extraction", "err", err)
		}
	}
}
