package source

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
)

const cacheDir = "opt/kubelet/downloads"

// Incompressible, so that the tarball is big enough to cut in places.
var (
	kubeletBody = noise(1, 96<<10)
	kubectlBody = noise(2, 64<<10)
)

func noise(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// nodeTarball is a kubernetes-node-linux-amd64.tar.gz as GNU tar writes it.
func nodeTarball(t *testing.T) []byte {
	t.Helper()
	pkgbuild.Require(t, "tar", "gzip")
	src := t.TempDir()
	bin := filepath.Join(src, "kubernetes/node/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"kubelet": kubeletBody, "kubectl": kubectlBody} {
		if err := os.WriteFile(filepath.Join(bin, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tar", "-czf", "-", "-C", src, "--owner=0", "--group=0", "kubernetes").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	return out
}

func testRoot(t *testing.T) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	return rootfstest.Open(t, dir), dir
}

// fastOptions keep retries and stalls to milliseconds.
func fastOptions(t *testing.T) Options {
	return Options{
		Attempts:       4,
		Backoff:        5 * time.Millisecond,
		MaxBackoff:     20 * time.Millisecond,
		Timeout:        10 * time.Second,
		RequestTimeout: 5 * time.Second,
		IdleTimeout:    300 * time.Millisecond,
		DockerConfig:   filepath.Join(t.TempDir(), "config.json"),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func newFetcher(t *testing.T, o Options) *Fetcher {
	t.Helper()
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func digestOf(b []byte) string { return "sha256:" + sha256Hex(b) }

// assertEmptyCache fails when a failed fetch left anything in the cache.
func assertEmptyCache(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, cacheDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("the cache holds %v after a failure", ents)
	}
}

// extractNode extracts kubelet and kubectl from the cached tarball rel
// the way bake does, and checks them.
func extractNode(t *testing.T, root *os.Root, dir, rel string) {
	t.Helper()
	tb, err := pkgfile.OpenTarball(root, rel, pkgfile.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for tool, body := range map[string][]byte{"kubelet": kubeletBody, "kubectl": kubectlBody} {
		dest := "opt/bin/" + tool + "-1.34.9"
		_, res, err := tb.ExtractTo(root, dest, "kubernetes/node/bin/"+tool)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, dest))
		if err != nil || !bytes.Equal(got, body) || res.SHA256 != sha256Hex(body) {
			t.Fatalf("%s: %d bytes, %v", dest, len(got), err)
		}
	}
}

// server is a loopback HTTP server whose handler a test scripts per request.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string // the Range header of every request, in order
}

func serve(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		n := len(s.ranges)
		s.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// serveFile serves body with Range support, as a static file server does.
func serveFile(body []byte) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "kubernetes-node-linux-amd64.tar.gz", time.Time{}, bytes.NewReader(body))
	}
}

// cutAfter announces all of body, sends its first n bytes and drops the
// connection, as a proxy that dies mid-transfer does.
func cutAfter(w http.ResponseWriter, body []byte, n int) {
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body[:n])
	w.(http.Flusher).Flush()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestFetchURL(t *testing.T) {
	tgz := nodeTarball(t)
	s := serve(t, serveFile(tgz))
	root, dir := testRoot(t)
	var reports [][2]int64
	o := fastOptions(t)
	o.Progress = func(done, total int64) { reports = append(reports, [2]int64{done, total}) }
	f := newFetcher(t, o)
	a := Artifact{Kind: URL, Ref: s.URL + "/v1.34.9/kubernetes-node-linux-amd64.tar.gz", Digest: digestOf(tgz)}
	rel, err := f.Fetch(context.Background(), a, root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if want := cacheDir + "/sha256-" + sha256Hex(tgz) + ".tar.gz"; rel != want {
		t.Fatalf("cached as %s, want %s", rel, want)
	}
	extractNode(t, root, dir, rel)
	if last := reports[len(reports)-1]; last != [2]int64{int64(len(tgz)), int64(len(tgz))} {
		t.Fatalf("last progress report %v, want %d of %d", last, len(tgz), len(tgz))
	}

	// A second bake finds the file and asks the server nothing.
	if rel2, err := f.Fetch(context.Background(), a, root, cacheDir); err != nil || rel2 != rel {
		t.Fatalf("second fetch: %s, %v", rel2, err)
	}
	if n := len(s.requests()); n != 1 {
		t.Fatalf("%d requests for one artifact fetched twice", n)
	}

	// A cached file that lost its content is not trusted, and is replaced.
	if err := os.WriteFile(filepath.Join(dir, rel), tgz[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Cached(root, cacheDir, a); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "(100 bytes), want "+sha256Hex(tgz)) {
		t.Fatalf("Cached of a damaged file: %v", err)
	}
	if _, err := f.Fetch(context.Background(), a, root, cacheDir); err != nil {
		t.Fatal(err)
	}
	if _, err := Cached(root, cacheDir, a); err != nil {
		t.Fatalf("after the re-download: %v", err)
	}
}

// fetchFails runs a fetch that must fail with an error wrapping want (when
// set) and saying msg, and leave the cache empty.
func fetchFails(t *testing.T, o Options, a Artifact, want error, msg string) {
	t.Helper()
	root, dir := testRoot(t)
	_, err := newFetcher(t, o).Fetch(context.Background(), a, root, cacheDir)
	if err == nil {
		t.Fatal("fetch succeeded")
	}
	t.Log(err)
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("error %v does not wrap %v", err, want)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not say %q", err, msg)
	}
	assertEmptyCache(t, dir)
}

func TestFetchURLFailures(t *testing.T) {
	tgz := nodeTarball(t)
	good := digestOf(tgz)
	url := func(s *server) string { return s.URL + "/kubernetes-node-linux-amd64.tar.gz" }

	t.Run("wrong digest", func(t *testing.T) {
		s := serve(t, serveFile(tgz))
		wrong := digestOf([]byte("another release"))
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: url(s), Digest: wrong}, ErrDigest, "the pin is "+wrong[len("sha256:"):])
		if n := len(s.requests()); n != 1 {
			t.Fatalf("%d requests: a wrong digest is not retried", n)
		}
	})
	t.Run("truncated every time", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, _ *http.Request) { cutAfter(w, tgz, len(tgz)/2) })
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: url(s), Digest: good}, io.ErrUnexpectedEOF, "gave up after 4 attempts")
		if n := len(s.requests()); n != 4 {
			t.Fatalf("%d requests, want 4 attempts", n)
		}
	})
	t.Run("not found is not retried", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: url(s), Digest: good}, nil, "HTTP 404 Not Found")
		if n := len(s.requests()); n != 1 {
			t.Fatalf("%d requests for a 404", n)
		}
	})
	t.Run("server errors until the attempts run out", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "backend down", http.StatusBadGateway)
		})
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: url(s), Digest: good}, nil, "HTTP 502 Bad Gateway: backend down (gave up after 4 attempts)")
	})
	t.Run("hangs before answering", func(t *testing.T) {
		s := serve(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		o := fastOptions(t)
		o.Attempts = 2
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, ErrStalled, "no data from 127.0.0.1")
	})
	t.Run("hangs mid-body", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
			w.Write(tgz[:1000])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		o := fastOptions(t)
		o.Attempts = 2
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, ErrStalled, "gave up after 2 attempts")
	})
	t.Run("deadline bounds the retries", func(t *testing.T) {
		s := serve(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		o := fastOptions(t)
		o.IdleTimeout = time.Minute
		o.Timeout = 300 * time.Millisecond
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, context.DeadlineExceeded, "gave up after 1 attempt")
	})
	t.Run("trickles past the request timeout", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
			for i := range tgz {
				w.Write(tgz[i : i+1])
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		o := fastOptions(t)
		o.Attempts = 1
		o.RequestTimeout = 200 * time.Millisecond
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, nil, "longer than the request timeout of 200ms")
	})
	t.Run("larger than the limit", func(t *testing.T) {
		s := serve(t, serveFile(tgz))
		o := fastOptions(t)
		o.MaxSize = 1000
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, ErrTooLarge, "limit 1000")
	})
	t.Run("larger than the limit without Content-Length", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			for i := 0; i < len(tgz); i += 512 {
				w.Write(tgz[i:min(i+512, len(tgz))])
				w.(http.Flusher).Flush()
			}
		})
		o := fastOptions(t)
		o.MaxSize = 4096
		fetchFails(t, o, Artifact{Kind: URL, Ref: url(s), Digest: good}, ErrTooLarge, "more than 4096 bytes")
	})
	t.Run("plain HTTP off loopback", func(t *testing.T) {
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: "http://mirror.example/k.tar.gz", Digest: good}, ErrPlainHTTP, "http://mirror.example/k.tar.gz")
	})
	t.Run("redirect to plain HTTP off loopback", func(t *testing.T) {
		s := serve(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://mirror.example/k.tar.gz", http.StatusFound)
		})
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: url(s), Digest: good}, ErrPlainHTTP, "GET http://mirror.example/k.tar.gz")
		if n := len(s.requests()); n != 1 {
			t.Fatalf("%d requests: a refused redirect is not retried", n)
		}
	})
	t.Run("bad digest in the artifact", func(t *testing.T) {
		fetchFails(t, fastOptions(t), Artifact{Kind: URL, Ref: "https://example/k.tgz", Digest: "sha256:ABC"}, nil, "want sha256:<64 lower-case hex digits>")
	})
}

func TestFetchURLRetries(t *testing.T) {
	tgz := nodeTarball(t)
	a := func(s *server) Artifact {
		return Artifact{Kind: URL, Ref: s.URL + "/kubernetes-node-linux-amd64.tar.gz", Digest: digestOf(tgz)}
	}
	fetchOK := func(t *testing.T, s *server) {
		t.Helper()
		root, dir := testRoot(t)
		rel, err := newFetcher(t, fastOptions(t)).Fetch(context.Background(), a(s), root, cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		extractNode(t, root, dir, rel)
	}
	t.Run("500 then 200", func(t *testing.T) {
		s := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				http.Error(w, "try again", http.StatusInternalServerError)
				return
			}
			serveFile(tgz)(n, w, r)
		})
		fetchOK(t, s)
		if n := len(s.requests()); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
	t.Run("cut connection resumes with Range", func(t *testing.T) {
		half := len(tgz) / 2
		s := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				cutAfter(w, tgz, half)
				return
			}
			serveFile(tgz)(n, w, r)
		})
		fetchOK(t, s)
		if got := s.requests(); len(got) != 2 || got[0] != "" || got[1] != fmt.Sprintf("bytes=%d-", half) {
			t.Fatalf("Range headers %q, want none then bytes=%d-", got, half)
		}
	})
	t.Run("cut connection, server without Range", func(t *testing.T) {
		s := serve(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 1 {
				cutAfter(w, tgz, len(tgz)/3)
				return
			}
			w.Write(tgz) // 200 with everything, Range ignored
		})
		fetchOK(t, s)
		if got := s.requests(); len(got) != 2 || got[1] == "" {
			t.Fatalf("Range headers %q: the retry should have asked for the rest", got)
		}
	})
	t.Run("bad Content-Range is not trusted", func(t *testing.T) {
		s := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
			switch n {
			case 1:
				cutAfter(w, tgz, 5000)
			case 2:
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(tgz)-1, len(tgz)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(tgz)
			default:
				serveFile(tgz)(n, w, r)
			}
		})
		fetchOK(t, s)
	})
}

func TestFetchURLCAFile(t *testing.T) {
	tgz := nodeTarball(t)
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "k.tgz", time.Time{}, bytes.NewReader(tgz))
	}))
	defer s.Close()
	a := Artifact{Kind: URL, Ref: s.URL + "/k.tgz", Digest: digestOf(tgz)}

	// The test server's certificate is signed by no system root.
	fetchFails(t, fastOptions(t), a, nil, "certificate")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	o := fastOptions(t)
	o.CAFile = ca
	root, dir := testRoot(t)
	rel, err := newFetcher(t, o).Fetch(context.Background(), a, root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(rel, ".tgz") {
		t.Fatalf("cached as %s", rel)
	}
	extractNode(t, root, dir, rel)

	if err := os.WriteFile(ca, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("New with a bad CA file: %v", err)
	}
}

// TestFetchHostileTarballs: a download that matches its pin is still
// untrusted content; the tar reader refuses it and writes no binary.
func TestFetchHostileTarballs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []pkgtest.File
		msg   string
	}{
		{"link out", []pkgtest.File{{Name: "kubernetes/node/bin/kubelet", Type: '2', Linkname: "../../../../etc/shadow"}}, "which leaves the archive"},
		{"traversal", []pkgtest.File{{Name: "kubernetes/node/bin/kubelet", Body: kubeletBody}, {Name: "kubernetes/../../etc/cron.d/evil", Body: []byte("* * * * * root sh")}}, "escapes the archive root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgz, err := pkgtest.Compress("gzip", pkgtest.Tar(tc.files))
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, serveFile(tgz))
			root, dir := testRoot(t)
			rel, err := newFetcher(t, fastOptions(t)).Fetch(context.Background(), Artifact{Kind: URL, Ref: s.URL + "/k.tar.gz", Digest: digestOf(tgz)}, root, cacheDir)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := pkgfile.OpenTarball(root, rel, pkgfile.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = tb.ExtractTo(root, "opt/bin/kubelet-1.34.9", "kubernetes/node/bin/kubelet")
			if !errors.Is(err, pkgfile.ErrUnsafe) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("extract: %v, want ErrUnsafe saying %q", err, tc.msg)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "opt/bin")); len(ents) != 0 {
				t.Fatalf("opt/bin holds %v", ents)
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.9.8.7": true, "::1": true, "::ffff:127.0.0.1": true,
		"10.0.0.1": false, "localhost.example": false, "mcr.microsoft.com": false, "": false, "0.0.0.0": false,
	} {
		if got := loopback(host); got != want {
			t.Errorf("loopback(%q) = %v", host, got)
		}
	}
}
