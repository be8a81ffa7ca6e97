package source

import (
	"strings"
	"testing"
)

// FuzzPickLayer feeds arbitrary manifests (registry input) to pickLayer:
// it must refuse them or name a well-formed sha256 layer.
func FuzzPickLayer(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:49845cc67922001727c3bf3d945e780090b137809a83b6bd5e5861bc613cfa36","size":164295,"annotations":{"org.opencontainers.image.title":"kubernetes-node-linux-amd64.tar.gz"}}]}`))
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add([]byte(`{"layers":[{"digest":"sha256:00","size":-1},{"digest":"sha256:01","annotations":{"org.opencontainers.image.title":"../../x.tar"}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := pickLayer(raw)
		if err != nil {
			return
		}
		if _, err := digestHex("sha256:" + l.hex); err != nil || l.size < 0 || strings.Contains(l.title, "/") {
			t.Fatalf("accepted layer %+v", l)
		}
		if name := cacheName(l.hex, l.title); strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
			t.Fatalf("cache name %q from layer %+v", name, l)
		}
	})
}

// FuzzContentRange: a server's Content-Range never yields a negative
// resume offset.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 100-199/200", "bytes 0-0/*", "bytes -1-5/10", "bytes 5/10", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, size, err := contentRange(v)
		if err == nil && (start < 0 || size < -1) {
			t.Fatalf("%q: start %d size %d", v, start, size)
		}
	})
}

// FuzzParseCacheName: a name in a cache dir (anyone may put files there)
// is read as a download only when it is exactly what Fetch writes for its
// digest.
func FuzzParseCacheName(f *testing.F) {
	hex := strings.Repeat("ab", 32)
	for _, s := range []string{"sha256-" + hex + ".tar.gz", "sha256-" + hex + ".manifest.json", "sha256-" + hex, "sha256-" + hex + ".deb", "sha256-" + hex + "/../x.tgz", "kubelet_1.34.10_amd64.deb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		cf, ok := ParseCacheName(name)
		if !ok {
			return
		}
		h, err := digestHex(cf.Digest)
		if err != nil || strings.Contains(name, "/") {
			t.Fatalf("%q accepted as %+v", name, cf)
		}
		if want := cacheName(h, "x"+name[len("sha256-")+64:]); !cf.Manifest && want != name || cf.Manifest && name != manifestName(h) {
			t.Fatalf("%q accepted as %+v, but Fetch writes %q", name, cf, want)
		}
	})
}
