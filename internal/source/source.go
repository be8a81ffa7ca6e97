// Package source downloads the tarballs that carry node binaries outside of
// packages into a cache under the root: a file from an HTTPS URL, or the
// layer of an OCI artifact (kubernetes-node:v1.34.9-linux-amd64) pulled from
// a registry. Every artifact is pinned by its sha256, which is checked
// before the file gets its name in the cache, so nothing that reads the
// cache ever sees unverified bytes; a failed download leaves nothing there.
//
// Cached files are named after their digest ("sha256-<hex>.tar.gz"), so a
// second run finds them without asking the network, and two entries that
// share an artifact (kubelet and kubectl from one kubernetes-node tarball)
// share one download. Cached re-hashes the file it finds rather than
// trusting the name: the cache lives on an image that outlives this run.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// Kind is where an artifact comes from.
type Kind string

const (
	// URL is a tarball served over HTTPS (plain HTTP on loopback only).
	URL Kind = "url"
	// OCI is an OCI artifact or image whose layer is the tarball.
	OCI Kind = "oci"
)

// Artifact is one pinned download.
type Artifact struct {
	Kind Kind
	// Ref is the URL for URL ("https://host/cni-plugins-linux-amd64.tgz"),
	// or the reference for OCI ("mcr.microsoft.com/oss/binaries/kubernetes/
	// kubernetes-node:v1.34.9-linux-amd64"), ${arch} and ${version} already
	// substituted.
	Ref string
	// Digest is "sha256:<hex>": of the file for URL, of the image or
	// artifact manifest for OCI (the tag is never trusted, only the pin).
	Digest string
}

func (a Artifact) String() string { return fmt.Sprintf("%s %s@%s", a.Kind, redact(a.Ref), a.Digest) }

// The kinds of failure a caller may want to tell apart; every error wraps
// at most one of them.
var (
	// ErrNotCached: Cached found no verified file for the artifact.
	ErrNotCached = errors.New("not cached")
	// ErrDigest: what was downloaded is not what the pin says.
	ErrDigest = errors.New("digest mismatch")
	// ErrTooLarge: the artifact is bigger than Options.MaxSize.
	ErrTooLarge = errors.New("too large")
	// ErrStalled: no byte arrived for Options.IdleTimeout.
	ErrStalled = errors.New("connection stalled")
	// ErrPlainHTTP: a plain-HTTP URL or registry that is not on loopback.
	ErrPlainHTTP = errors.New("plain HTTP is only allowed to localhost or a loopback address")
)

// Validate checks the artifact without touching the network.
func (a Artifact) Validate() error {
	if _, err := digestHex(a.Digest); err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	switch a.Kind {
	case URL:
		u, err := url.Parse(a.Ref)
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%s: want an https:// URL", a)
		}
		if u.Scheme == "http" && !loopback(u.Hostname()) {
			return fmt.Errorf("%s: %w", a, ErrPlainHTTP)
		}
	case OCI:
		ref, err := registry.ParseReference(a.Ref)
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if d, err := ref.Digest(); err == nil && d.String() != a.Digest {
			return fmt.Errorf("%s: the reference names digest %s, the pin %s", a, d, a.Digest)
		}
	default:
		return fmt.Errorf("%s: unknown source kind %q: want url or oci", a, a.Kind)
	}
	return nil
}

// digestHex is the hex of a "sha256:<64 lower-case hex>" digest.
func digestHex(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != sha256.Size*2 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q: want sha256:<64 lower-case hex digits>", d)
	}
	return h, nil
}

// Options tune a Fetcher. The zero value of each field picks the default
// in its comment.
type Options struct {
	// CAFile is a PEM file of certificates trusted besides the system's
	// roots (a private mirror's CA).
	CAFile string
	// DockerConfig is the docker config.json with registry credentials
	// and credential helpers; "" reads $DOCKER_CONFIG/config.json, else
	// ~/.docker/config.json. A missing file means anonymous pulls.
	DockerConfig string
	// Attempts bounds the tries of every request (4).
	Attempts int
	// Backoff is the wait after the first failed try (1s); it doubles
	// after each further one, up to MaxBackoff (8s).
	Backoff, MaxBackoff time.Duration
	// Timeout bounds a whole Fetch, retries and waits included (30m).
	Timeout time.Duration
	// RequestTimeout bounds one request, its body included (10m).
	RequestTimeout time.Duration
	// IdleTimeout fails a request when no byte arrives for this long,
	// waiting for the response or in the middle of its body (30s).
	IdleTimeout time.Duration
	// MaxSize bounds a download (2 GiB).
	MaxSize int64
	// Progress, if set, is called as a download advances (at most every
	// MiB and once at its end), with total -1 while the size is unknown.
	Progress func(done, total int64)
	// Logger receives one line per download and per retry (slog.Default
	// when nil).
	Logger *slog.Logger
}

// DefaultMaxSize fits any node binary tarball (kubernetes-node is ~120 MiB)
// while keeping a hostile server from filling the disk.
const DefaultMaxSize = 2 << 30

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	def(&o.Backoff, time.Second)
	def(&o.MaxBackoff, 8*time.Second)
	def(&o.Timeout, 30*time.Minute)
	def(&o.RequestTimeout, 10*time.Minute)
	def(&o.IdleTimeout, 30*time.Second)
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Fetcher downloads artifacts into a cache. It may be used by several
// goroutines at once.
type Fetcher struct {
	o      Options
	client *httpClient
	// registry is built on the first OCI pull, so that an unreadable
	// docker config fails only the runs that need it.
	registry func() (*registryClient, error)
}

// New returns a Fetcher with o's defaults filled in. It reads CAFile.
func New(o Options) (*Fetcher, error) {
	o = o.withDefaults()
	c, err := newHTTPClient(o)
	if err != nil {
		return nil, err
	}
	f := &Fetcher{o: o, client: c}
	f.registry = sync.OnceValues(func() (*registryClient, error) { return newRegistryClient(o, c) })
	return f, nil
}

// Fetch makes sure the artifact is in cacheDir (slash-separated, relative
// to root) and returns the cached tarball's name relative to root. What
// Cached accepts is not downloaded again; anything else is downloaded to a
// temp file in cacheDir, hashed while written, compared with the pin, and
// only then renamed to its cache name. On error nothing new is left in
// cacheDir.
func (f *Fetcher) Fetch(ctx context.Context, a Artifact, root *os.Root, cacheDir string) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	rel, err := Cached(root, cacheDir, a)
	if err == nil {
		f.o.Logger.Debug("artifact cached", "artifact", a.String(), "file", "/"+rel)
		return rel, nil
	}
	if !errors.Is(err, ErrNotCached) {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	if a.Kind == OCI {
		rel, err = f.pullOCI(ctx, a, root, cacheDir)
	} else {
		rel, err = f.fetchURL(ctx, a, root, cacheDir)
	}
	if err != nil {
		return "", fmt.Errorf("fetching %s: %w", a, err)
	}
	return rel, nil
}

func (f *Fetcher) fetchURL(ctx context.Context, a Artifact, root *os.Root, cacheDir string) (string, error) {
	want, _ := digestHex(a.Digest)
	rel := path.Join(cacheDir, cacheName(want, urlBase(a.Ref)))
	_, err := f.download(ctx, root, rel, download{url: a.Ref, do: f.client.Do, size: -1, sha256: want})
	return rel, err
}

// Cached returns the name (relative to root) of the artifact's tarball in
// cacheDir when it is there and its content has the pinned digest; for OCI
// the cached manifest must have the pinned digest and the tarball the
// digest and size its layer descriptor declares. Any other outcome is an
// error that wraps ErrNotCached and says what was found. Checking means
// reading the whole file (about 0.1 s per 100 MiB): the name alone proves
// nothing about a cache on a disk image.
func Cached(root *os.Root, cacheDir string, a Artifact) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	want, _ := digestHex(a.Digest)
	if a.Kind == URL {
		rel := path.Join(cacheDir, cacheName(want, urlBase(a.Ref)))
		return rel, verifyFile(root, rel, want, -1)
	}
	mrel := path.Join(cacheDir, manifestName(want))
	raw, err := readCached(root, mrel, maxManifestSize)
	if err != nil {
		return "", err
	}
	if got := sha256Hex(raw); got != want {
		return "", fmt.Errorf("cached manifest /%s has digest sha256:%s, the pin is %s: %w", mrel, got, a.Digest, ErrNotCached)
	}
	layer, err := pickLayer(raw)
	if err != nil {
		return "", fmt.Errorf("cached manifest /%s: %w", mrel, err)
	}
	rel := path.Join(cacheDir, cacheName(layer.hex, layer.title))
	return rel, verifyFile(root, rel, layer.hex, layer.size)
}

// verifyFile checks that rel is a regular file of size (any when -1)
// with sha256 want.
func verifyFile(root *os.Root, rel, want string, size int64) error {
	fl, err := rootfs.OpenRegular(root, rel)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("/%s: %w", rel, ErrNotCached)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrNotCached)
	}
	defer fl.Close()
	res, err := rootfs.Digest(fl)
	if err != nil {
		return fmt.Errorf("hashing /%s: %w", rel, err)
	}
	if res.SHA256 != want || (size >= 0 && res.Size != size) {
		return fmt.Errorf("/%s has sha256 %s (%d bytes), want %s: %w", rel, res.SHA256, res.Size, want, ErrNotCached)
	}
	return nil
}

// readCached reads a small cache file whole.
func readCached(root *os.Root, rel string, limit int64) ([]byte, error) {
	fl, err := rootfs.OpenRegular(root, rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("/%s: %w", rel, ErrNotCached)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrNotCached)
	}
	defer fl.Close()
	b, err := io.ReadAll(io.LimitReader(fl, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", rel, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("/%s: more than %d bytes: %w", rel, limit, ErrNotCached)
	}
	return b, nil
}

// cacheName is "sha256-<hex>" plus the archive suffix of the name the
// source gives the file, so a person listing the cache sees what it is;
// the tar reader goes by magic bytes, never by this suffix.
func cacheName(hex, source string) string {
	lower := strings.ToLower(source)
	for _, ext := range []string{".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tar"} {
		if strings.HasSuffix(lower, ext) {
			return "sha256-" + hex + ext
		}
	}
	return "sha256-" + hex
}

// manifestName is where an OCI pull keeps the manifest it verified, so that
// Cached can find and check the layer without the registry.
func manifestName(hex string) string { return "sha256-" + hex + ".manifest.json" }

func urlBase(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return path.Base(u.Path)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// redact keeps credentials and query strings (signed URLs carry tokens
// there) out of messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.Fragment = ""
	return u.Redacted()
}
