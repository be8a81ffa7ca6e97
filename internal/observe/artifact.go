package observe

import (
	"fmt"
	"io/fs"
	"path"

	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/source"
	"github.com/nodeimage/reconcile/internal/state"
)

// IsArtifactFile reports whether a directory entry of a cache dir is a
// file a download wrote there (a regular "sha256-<hex>" tarball or OCI
// manifest): what removing the cache deletes besides the packages.
func IsArtifactFile(e fs.DirEntry) bool {
	_, ok := source.ParseCacheName(e.Name())
	return ok && e.Type().IsRegular()
}

// listArtifacts lists the downloads in dir by their names, and reads each
// OCI manifest for the name of its tarball. Contents are not hashed here:
// apply verifies what it uses.
func listArtifacts(st *state.State, l *listings, dir string) error {
	entries, err := l.readDir(dir)
	if err != nil {
		return err
	}
	var found []state.Artifact
	for _, e := range entries {
		cf, ok := source.ParseCacheName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		a := state.Artifact{File: path.Join(dir, e.Name()), Digest: cf.Digest, Manifest: cf.Manifest}
		if cf.Manifest {
			raw, err := source.ReadManifest(l.root, rootfs.Rel(a.File))
			if err == nil {
				var layer string
				layer, err = source.ManifestLayer(raw)
				a.Layer = path.Join(dir, layer)
			}
			if err != nil {
				a.Layer, a.Err = "", fmt.Errorf("reading %s: %w", a.File, err)
			}
		}
		found = append(found, a)
	}
	if st.Artifacts == nil {
		st.Artifacts = map[string][]state.Artifact{}
	}
	st.Artifacts[dir] = found
	return nil
}
