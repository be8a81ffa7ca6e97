package source

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/nodeimage/reconcile/internal/source/sourcetest"
)

const (
	nodeRepo = "oss/binaries/kubernetes/kubernetes-node"
	nodeTag  = "v1.34.9-linux-amd64"
)

func startRegistry(t *testing.T, user, password string) string {
	return sourcetest.StartRegistry(t, user, password)
}

// pushNode pushes tgz as the kubernetes-node artifact tagged nodeTag.
func pushNode(t *testing.T, addr string, tgz []byte, cred auth.Credential) string {
	return sourcetest.Push(t, addr, nodeRepo, nodeTag, "kubernetes-node-linux-amd64.tar.gz", tgz, cred)
}

// proxy is a loopback reverse proxy in front of a registry that counts
// requests and lets a test break some of them: fault sees every request,
// with the number of the blob GET it is (0 for other requests), and
// answers it itself by returning true.
type proxy struct {
	*httptest.Server
	mu    sync.Mutex
	blobs int // blob GETs seen
	all   int
}

func newProxy(t *testing.T, addr string, fault func(blobGET int, w http.ResponseWriter, r *http.Request) bool) *proxy {
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.all++
		n := 0
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			p.blobs++
			n = p.blobs
		}
		p.mu.Unlock()
		if fault != nil && fault(n, w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) counts() (all, blobs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all, p.blobs
}

func (p *proxy) host() string { return strings.TrimPrefix(p.URL, "http://") }

func ociArtifact(host, digest string) Artifact {
	return Artifact{Kind: OCI, Ref: host + "/" + nodeRepo + ":" + nodeTag, Digest: digest}
}

func TestPullOCI(t *testing.T) {
	tgz := nodeTarball(t)
	addr := startRegistry(t, "", "")
	digest := pushNode(t, addr, tgz, auth.EmptyCredential)
	p := newProxy(t, addr, nil)
	root, dir := testRoot(t)
	f := newFetcher(t, fastOptions(t))
	a := ociArtifact(p.host(), digest)

	rel, err := f.Fetch(context.Background(), a, root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if want := cacheDir + "/sha256-" + sha256Hex(tgz) + ".tar.gz"; rel != want {
		t.Fatalf("cached as %s, want %s (named after the layer's digest and title)", rel, want)
	}
	extractNode(t, root, dir, rel)

	// Offline, Cached checks the manifest and the layer from the cache.
	if rel2, err := Cached(root, cacheDir, a); err != nil || rel2 != rel {
		t.Fatalf("Cached: %s, %v", rel2, err)
	}
	before, _ := p.counts()
	if _, err := f.Fetch(context.Background(), a, root, cacheDir); err != nil {
		t.Fatal(err)
	}
	if after, _ := p.counts(); after != before {
		t.Fatalf("a cached artifact cost %d requests", after-before)
	}

	// A cached manifest whose layer went missing is pulled again.
	if err := os.Remove(filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
	if _, err := Cached(root, cacheDir, a); !errors.Is(err, ErrNotCached) {
		t.Fatalf("Cached without the layer: %v", err)
	}
	if _, err := f.Fetch(context.Background(), a, root, cacheDir); err != nil {
		t.Fatal(err)
	}
	extractNode(t, root, dir, rel)

	// The same artifact by its digest, straight from the registry.
	root2, dir2 := testRoot(t)
	rel, err = f.Fetch(context.Background(), Artifact{Kind: OCI, Ref: addr + "/" + nodeRepo + "@" + digest, Digest: digest}, root2, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	extractNode(t, root2, dir2, rel)
}

func TestPullOCIFailures(t *testing.T) {
	tgz := nodeTarball(t)
	addr := startRegistry(t, "", "")
	digest := pushNode(t, addr, tgz, auth.EmptyCredential)

	t.Run("pinned manifest not in the registry", func(t *testing.T) {
		p := newProxy(t, addr, nil)
		wrong := digestOf([]byte("no such manifest"))
		fetchFails(t, fastOptions(t), ociArtifact(p.host(), wrong), nil, "not found")
		if all, _ := p.counts(); all > 2 {
			t.Fatalf("%d requests: a missing manifest is not retried", all)
		}
	})
	t.Run("registry answers 500 then 200", func(t *testing.T) {
		p := newProxy(t, addr, func(n int, w http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				http.Error(w, "storage unavailable", http.StatusInternalServerError)
				return true
			}
			return false
		})
		pullAndExtract(t, fastOptions(t), ociArtifact(p.host(), digest))
		if _, blobs := p.counts(); blobs != 2 {
			t.Fatalf("%d blob requests, want 2", blobs)
		}
	})
	t.Run("registry hangs", func(t *testing.T) {
		p := newProxy(t, addr, func(n int, _ http.ResponseWriter, r *http.Request) bool {
			if n == 0 {
				return false
			}
			<-r.Context().Done()
			return true
		})
		o := fastOptions(t)
		o.Attempts = 2
		fetchFails(t, o, ociArtifact(p.host(), digest), ErrStalled, "gave up after 2 attempts")
	})
	t.Run("layer cut and resumed", func(t *testing.T) {
		var ranges []string
		p := newProxy(t, addr, func(n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 0 {
				return false
			}
			ranges = append(ranges, r.Header.Get("Range"))
			if n == 1 {
				cutAfter(w, tgz, len(tgz)/2)
				return true
			}
			return false
		})
		pullAndExtract(t, fastOptions(t), ociArtifact(p.host(), digest))
		if len(ranges) != 2 || ranges[1] != fmt.Sprintf("bytes=%d-", len(tgz)/2) {
			t.Fatalf("Range headers %q", ranges)
		}
	})
	t.Run("registry serves another manifest", func(t *testing.T) {
		p := newProxy(t, addr, func(_ int, w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
			w.Write([]byte(`{"schemaVersion":2,"layers":[]}`))
			return true
		})
		// oras-go checks the body against the digest asked for and says
		// so in a message without a sentinel error.
		fetchFails(t, fastOptions(t), ociArtifact(p.host(), digest), nil, "digest mismatch")
	})
	t.Run("registry serves another layer", func(t *testing.T) {
		evil := bytes.Clone(tgz)
		evil[len(evil)/2] ^= 1
		p := newProxy(t, addr, func(n int, w http.ResponseWriter, _ *http.Request) bool {
			if n == 0 {
				return false
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(evil)))
			w.Write(evil)
			return true
		})
		fetchFails(t, fastOptions(t), ociArtifact(p.host(), digest), ErrDigest, "the pin is "+sha256Hex(tgz))
		if _, blobs := p.counts(); blobs != 1 {
			t.Fatalf("%d blob requests: a wrong layer is not retried", blobs)
		}
	})
	t.Run("plain HTTP registry off loopback", func(t *testing.T) {
		o := fastOptions(t)
		o.Attempts = 1
		root, dir := testRoot(t)
		_, err := newFetcher(t, o).Fetch(context.Background(), ociArtifact("registry.invalid", digest), root, cacheDir)
		// HTTPS is tried (and fails to resolve); plain HTTP never is.
		if err == nil || strings.Contains(err.Error(), "http://") {
			t.Fatalf("fetch from registry.invalid: %v", err)
		}
		assertEmptyCache(t, dir)
	})
}

func TestPullOCIDockerConfigAuth(t *testing.T) {
	tgz := nodeTarball(t)
	addr := startRegistry(t, "builder", "s3cret")
	digest := pushNode(t, addr, tgz, auth.Credential{Username: "builder", Password: "s3cret"})
	a := ociArtifact(addr, digest)

	// Anonymous: refused at once, saying what is missing.
	fetchFails(t, fastOptions(t), a, nil, addr+" wants a login, and the docker config has none")

	o := fastOptions(t)
	token := base64.StdEncoding.EncodeToString([]byte("builder:s3cret"))
	if err := os.WriteFile(o.DockerConfig, []byte(`{"auths":{"`+addr+`":{"auth":"`+token+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	pullAndExtract(t, o, a)
}

// pullAndExtract fetches a into a root of its own, which must succeed, and
// extracts both node binaries from it.
func pullAndExtract(t *testing.T, o Options, a Artifact) {
	t.Helper()
	root, dir := testRoot(t)
	rel, err := newFetcher(t, o).Fetch(context.Background(), a, root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	extractNode(t, root, dir, rel)
}

func TestPickLayer(t *testing.T) {
	d := func(b string) string { return digestOf([]byte(b)) }
	for _, tc := range []struct {
		name, manifest, want, msg string
	}{
		{"single layer", `{"layers":[{"mediaType":"application/octet-stream","digest":"` + d("a") + `","size":1}]}`, d("a"), ""},
		{"the one titled .tar.gz", `{"layers":[{"mediaType":"application/json","digest":"` + d("a") + `","size":1},
			{"mediaType":"application/octet-stream","digest":"` + d("b") + `","size":1,"annotations":{"org.opencontainers.image.title":"kubernetes-node-linux-arm64.tar.gz"}}]}`, d("b"), ""},
		{"two tarballs", `{"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d("a") + `","size":1},
			{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d("b") + `","size":1}]}`, "", "2 layers, 2 of them tarballs"},
		{"no layers", `{"layers":[]}`, "", "0 layers"},
		{"index", `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, "", "image index"},
		{"sha512 layer", `{"layers":[{"digest":"sha512:00","size":1}]}`, "", "want sha256"},
		{"not JSON", `<html>`, "", "not a JSON manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := pickLayer([]byte(tc.manifest))
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("%v, want an error saying %q", err, tc.msg)
				}
				return
			}
			if err != nil || "sha256:"+l.hex != tc.want {
				t.Fatalf("%+v, %v; want %s", l, err, tc.want)
			}
		})
	}
}
