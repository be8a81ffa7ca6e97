package plan

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/state"
)

// Reason codes of entries whose binary comes from a tarball or an OCI
// artifact.
const (
	CodeArtifactMissing    = "artifact_missing"    // error: --offline, and the artifact is in no cache dir
	CodeArtifactUnreadable = "artifact_unreadable" // info: a cached OCI manifest that cannot be read, not used
)

// artifactFrom names where an artifact Extract reads its tarball, for
// its line.
func (a Action) artifactFrom() string {
	if a.ArtifactFile != "" {
		return path.Base(a.ArtifactFile)
	}
	return "the download of " + a.Ref
}

// artifactKey is what makes two actions read one download.
func (a Action) artifactKey() string { return a.Ref + "@" + a.Digest }

func artifactRef(e manifest.Entry) string {
	if e.Source == manifest.FromURL {
		return e.URL
	}
	return e.Ref
}

// fromArtifact plans a (an Extract to a.Path) out of e's artifact: from
// the cache when a cache dir of the entries sharing it holds it, else
// after a Download, one per artifact, into the cache dir of the first
// entry that needs it. With Offline a missing artifact is a problem.
func (p *Plan) fromArtifact(a Action, e manifest.Entry, st *state.State, req Request, why string) {
	a.Op, a.Source, a.Ref, a.Digest, a.Candidates, a.CacheDir = Extract, e.Source, artifactRef(e), e.Digest, e.BinaryPaths, e.CacheDir
	dirs := p.artifactDirs(e)
	if file, ok := p.cachedArtifact(e, dirs, st); ok {
		a.ArtifactFile, a.CacheDir = file, path.Dir(file)
		a.Reason = why + "; the artifact is cached"
		p.Actions = append(p.Actions, a)
		return
	}
	if i := slices.IndexFunc(p.Actions, func(d Action) bool { return d.Op == Download && d.artifactKey() == a.artifactKey() }); i >= 0 {
		a.CacheDir = p.Actions[i].CacheDir
	} else if req.Offline {
		p.add(report.Error, CodeArtifactMissing, e.CacheDir, &e, "%s: %s %s@%s is not in %s, and --offline forbids downloading it",
			e.ID(), e.Source, a.Ref, a.Digest, strings.Join(dirs, " or "))
		if p.Mode == Bake {
			// At bake a failure is the run's, not the tool's.
			p.Report[len(p.Report)-1].ExitCode = 1
		}
		return
	} else {
		d := base(e)
		d.Op, d.Source, d.Ref, d.Digest, d.CacheDir, d.Path = Download, a.Source, a.Ref, a.Digest, e.CacheDir, e.CacheDir
		d.Reason = "the artifact is in no cache dir of " + strings.Join(dirs, ", ")
		p.Actions = append(p.Actions, d)
	}
	a.Reason = why + "; the artifact is downloaded first"
	p.Actions = append(p.Actions, a)
}

// artifactDirs are the cache dirs of the entries that share e's artifact,
// in manifest order: where a download of it may be.
func (p *Plan) artifactDirs(e manifest.Entry) []string {
	dirs := []string{}
	for _, o := range p.entries {
		if o.Artifact() == e.Artifact() && !slices.Contains(dirs, o.CacheDir) {
			dirs = append(dirs, o.CacheDir)
		}
	}
	if !slices.Contains(dirs, e.CacheDir) {
		dirs = append(dirs, e.CacheDir)
	}
	return dirs
}

// cachedArtifact finds the tarball of e's artifact in dirs by the names of
// the files there: for a URL the tarball named by the pin, for OCI the
// manifest named by the pin and the tarball it names. Apply checks the
// content before reading it.
func (p *Plan) cachedArtifact(e manifest.Entry, dirs []string, st *state.State) (string, bool) {
	for _, dir := range dirs {
		files := st.Artifacts[dir]
		tarball := func(match func(state.Artifact) bool) (string, bool) {
			i := slices.IndexFunc(files, func(f state.Artifact) bool { return !f.Manifest && match(f) })
			if i < 0 {
				return "", false
			}
			return files[i].File, true
		}
		if e.Source == manifest.FromURL {
			if f, ok := tarball(func(f state.Artifact) bool { return f.Digest == e.Digest }); ok {
				return f, true
			}
			continue
		}
		for _, m := range files {
			if !m.Manifest || m.Digest != e.Digest {
				continue
			}
			if m.Err != nil {
				if !slices.ContainsFunc(p.Report, func(it report.Item) bool { return it.Code == CodeArtifactUnreadable && it.Path == m.File }) {
					p.add(report.Info, CodeArtifactUnreadable, m.File, nil, "ignored %s: %v", m.File, m.Err)
				}
				continue
			}
			if f, ok := tarball(func(f state.Artifact) bool { return f.File == m.Layer }); ok {
				return f, true
			}
		}
	}
	return "", false
}

// sameArtifact reports whether a recorded binary came out of e's pinned
// artifact; package entries are matched by the record's package alone.
func sameArtifact(e manifest.Entry, rec state.Binary) bool {
	return e.Source == manifest.FromPackage || rec.Source.Digest == e.Digest
}

// holdsArtifacts reports whether boot's cache removal has downloads to
// delete in dir: some on disk, or one this plan makes.
func (p *Plan) holdsArtifacts(dir string, st *state.State) bool {
	return len(st.Artifacts[dir]) > 0 || slices.ContainsFunc(p.Actions, func(a Action) bool { return a.Op == Download && a.CacheDir == dir })
}

func describeArtifact(e manifest.Entry) string {
	return fmt.Sprintf("%s %s from %s@%s", e.Tool, e.Version.Upstream, artifactRef(e), e.Digest)
}
