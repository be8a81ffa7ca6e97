package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

func TestParseCacheName(t *testing.T) {
	hex := strings.Repeat("0f", 32)
	for name, want := range map[string]*CacheFile{
		"sha256-" + hex + ".tar.gz":        {Digest: "sha256:" + hex},
		"sha256-" + hex + ".tgz":           {Digest: "sha256:" + hex},
		"sha256-" + hex:                    {Digest: "sha256:" + hex},
		"sha256-" + hex + ".manifest.json": {Digest: "sha256:" + hex, Manifest: true},
		"sha256-" + hex + ".deb":           nil,
		"sha256-" + hex + ".TGZ":           nil,
		"sha256-" + strings.ToUpper(hex):   nil,
		"sha256-" + hex[:62] + ".tar.gz":   nil,
		".reconcile-tmp-sha256-" + hex:     nil,
		"kubelet_1.34.10_amd64.deb":        nil,
	} {
		got, ok := ParseCacheName(name)
		if ok != (want != nil) || ok && got != *want {
			t.Errorf("ParseCacheName(%q) = %+v, %v; want %+v", name, got, ok, want)
		}
	}
}

// TestForget removes what a pull wrote, the layer and the manifest, and
// what a URL download wrote; nothing else in the dir.
func TestForget(t *testing.T) {
	tgz := nodeTarball(t)
	addr := startRegistry(t, "", "")
	digest := pushNode(t, addr, tgz, auth.EmptyCredential)
	s := serve(t, serveFile(tgz))
	root, dir := testRoot(t)
	f := newFetcher(t, fastOptions(t))
	other := filepath.Join(dir, cacheDir, "kubelet_1.34.10_amd64.deb")
	for _, a := range []Artifact{ociArtifact(addr, digest), {Kind: URL, Ref: s.URL + "/crictl.tgz", Digest: digestOf(tgz)}} {
		if _, err := f.Fetch(context.Background(), a, root, cacheDir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Forget(root, cacheDir, a); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, cacheDir))
		if len(ents) != 1 || ents[0].Name() != filepath.Base(other) {
			t.Fatalf("after Forget(%s) the cache holds %v", a, ents)
		}
		if _, err := Cached(root, cacheDir, a); err == nil {
			t.Fatalf("%s still cached", a)
		}
	}
}
