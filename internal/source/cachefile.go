package source

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// CacheFile is what the name of a file in a cache dir says of it, for
// observing a cache without reading it.
type CacheFile struct {
	// Digest is "sha256:<hex>" from the name: the tarball's own for a
	// tarball, the pinned manifest's for a manifest.
	Digest string
	// Manifest marks the manifest an OCI pull verified and kept
	// (sha256-<hex>.manifest.json).
	Manifest bool
}

// ParseCacheName reads a file name that Fetch writes ("sha256-<hex>",
// plus an archive suffix or ".manifest.json"); ok is false for any other
// name.
func ParseCacheName(name string) (CacheFile, bool) {
	rest, ok := strings.CutPrefix(name, "sha256-")
	if !ok || len(rest) < 64 {
		return CacheFile{}, false
	}
	hex, ext := rest[:64], rest[64:]
	if _, err := digestHex("sha256:" + hex); err != nil {
		return CacheFile{}, false
	}
	if ext == ".manifest.json" {
		return CacheFile{Digest: "sha256:" + hex, Manifest: true}, true
	}
	if cacheName(hex, "x"+ext) != name {
		return CacheFile{}, false
	}
	return CacheFile{Digest: "sha256:" + hex}, true
}

// ManifestLayer is the cache name of the tarball that a cached OCI
// manifest (raw) points at: what Fetch wrote beside it.
func ManifestLayer(raw []byte) (string, error) {
	l, err := pickLayer(raw)
	if err != nil {
		return "", err
	}
	return cacheName(l.hex, l.title), nil
}

// ReadManifest reads the cached manifest at rel (relative to root),
// bounded as a pull bounds it.
func ReadManifest(root *os.Root, rel string) ([]byte, error) {
	return readCached(root, rel, maxManifestSize)
}

// Forget removes the artifact's files from cacheDir: its tarball and, for
// OCI, the manifest that names it. A file already gone is no error.
func Forget(root *os.Root, cacheDir string, a Artifact) error {
	want, err := digestHex(a.Digest)
	if err != nil {
		return err
	}
	var names []string
	if a.Kind == URL {
		names = []string{cacheName(want, urlBase(a.Ref))}
	} else {
		mrel := path.Join(cacheDir, manifestName(want))
		if raw, err := readCached(root, mrel, maxManifestSize); err == nil {
			if layer, err := ManifestLayer(raw); err == nil {
				names = append(names, layer)
			}
		}
		names = append(names, manifestName(want))
	}
	var errs []error
	for _, n := range names {
		if err := root.Remove(path.Join(cacheDir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing the download of %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
