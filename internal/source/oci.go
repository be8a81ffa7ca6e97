package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// maxManifestSize bounds a manifest, which is held in memory (oras-go's
// own default).
const maxManifestSize = 4 << 20

// registryClient authenticates to registries the way docker and oras do.
type registryClient struct{ auth *auth.Client }

func newRegistryClient(o Options, c *httpClient) (*registryClient, error) {
	var store credentials.Store
	var err error
	if o.DockerConfig != "" {
		store, err = credentials.NewStore(o.DockerConfig, credentials.StoreOptions{})
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials from the docker config: %w", err)
	}
	return &registryClient{auth: &auth.Client{
		Client:     c.Client,
		Cache:      auth.NewCache(),
		Credential: credentials.Credential(store),
		Header:     http.Header{"User-Agent": {"reconcile"}},
	}}, nil
}

// pullOCI fetches the pinned manifest by its digest (the tag in the
// reference is for people and is not consulted), picks the layer that is
// the tarball, and downloads that blob verified by its descriptor. The
// manifest goes into the cache after the layer, so Cached never finds a
// manifest whose layer is missing.
func (f *Fetcher) pullOCI(ctx context.Context, a Artifact, root *os.Root, cacheDir string) (string, error) {
	rc, err := f.registry()
	if err != nil {
		return "", err
	}
	ref, err := registry.ParseReference(a.Ref)
	if err != nil {
		return "", err
	}
	host := (&url.URL{Host: ref.Registry}).Hostname()
	repo := &remote.Repository{Client: rc.auth, Reference: ref, PlainHTTP: loopback(host)}
	want, _ := digestHex(a.Digest)

	var raw []byte
	err = f.retry(ctx, "manifest "+a.Digest, func(ctx context.Context) error {
		desc, rc, err := repo.FetchReference(ctx, a.Digest)
		if err != nil {
			return err
		}
		defer rc.Close()
		if desc.Size > maxManifestSize {
			return fmt.Errorf("manifest of %d bytes, more than %d: %w", desc.Size, maxManifestSize, errdef.ErrSizeExceedsLimit)
		}
		raw, err = content.ReadAll(rc, desc)
		return err
	})
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return "", fmt.Errorf("fetching manifest: %w: %s wants a login, and the docker config has none for it", err, ref.Registry)
	}
	if errors.Is(err, content.ErrMismatchedDigest) {
		return "", fmt.Errorf("fetching manifest: %w: %w", ErrDigest, err)
	}
	if err != nil {
		return "", fmt.Errorf("fetching manifest: %w", err)
	}
	if got := sha256Hex(raw); got != want {
		return "", fmt.Errorf("%w: the registry's manifest has sha256 %s", ErrDigest, got)
	}
	layer, err := pickLayer(raw)
	if err != nil {
		return "", fmt.Errorf("manifest %s: %w", a.Digest, err)
	}
	if layer.size > f.o.MaxSize {
		return "", fmt.Errorf("layer sha256:%s: %d bytes, limit %d: %w", layer.hex, layer.size, f.o.MaxSize, ErrTooLarge)
	}

	rel := path.Join(cacheDir, cacheName(layer.hex, layer.title))
	fresh := false
	if verifyFile(root, rel, layer.hex, layer.size) != nil {
		scheme := "https"
		if repo.PlainHTTP {
			scheme = "http"
		}
		blob := (&url.URL{
			Scheme: scheme,
			Host:   ref.Registry,
			Path:   "/v2/" + ref.Repository + "/blobs/sha256:" + layer.hex,
		}).String()
		dctx := auth.AppendRepositoryScope(ctx, ref, auth.ActionPull)
		if _, err := f.download(dctx, root, rel, download{url: blob, do: rc.auth.Do, size: layer.size, sha256: layer.hex}); err != nil {
			return "", fmt.Errorf("layer sha256:%s: %w", layer.hex, err)
		}
		fresh = true
	}
	mrel := path.Join(cacheDir, manifestName(want))
	if _, err := rootfs.WriteAtomic(root, mrel, 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	}); err != nil {
		if fresh {
			root.Remove(rel)
		}
		return "", fmt.Errorf("caching manifest: %w", err)
	}
	return rel, nil
}

// layer is the tarball a manifest points at.
type layer struct {
	hex   string
	size  int64
	title string // org.opencontainers.image.title, e.g. kubernetes-node-linux-amd64.tar.gz
}

// pickLayer finds the tarball among a manifest's layers: the only layer,
// or the only one whose title or media type says tar.
func pickLayer(raw []byte) (layer, error) {
	var m struct {
		MediaType string               `json:"mediaType"`
		Manifests []json.RawMessage    `json:"manifests"`
		Layers    []ocispec.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return layer{}, fmt.Errorf("not a JSON manifest: %w", err)
	}
	if m.Manifests != nil || m.MediaType == ocispec.MediaTypeImageIndex || strings.Contains(m.MediaType, "manifest.list") {
		return layer{}, errors.New("is an image index, not a manifest: pin the digest of the manifest of one platform (the -linux-<arch> tag)")
	}
	cands := m.Layers
	if len(cands) > 1 {
		cands = nil
		for _, l := range m.Layers {
			if title := l.Annotations[ocispec.AnnotationTitle]; cacheName("", title) != "sha256-" || strings.Contains(l.MediaType, "tar") {
				cands = append(cands, l)
			}
		}
	}
	if len(cands) != 1 {
		return layer{}, fmt.Errorf("%d layers, %d of them tarballs (by title or media type): want exactly one", len(m.Layers), len(cands))
	}
	l := cands[0]
	hex, err := digestHex(string(l.Digest))
	if err != nil {
		return layer{}, fmt.Errorf("layer: %w", err)
	}
	if l.Size < 0 {
		return layer{}, fmt.Errorf("layer %s: size %d", l.Digest, l.Size)
	}
	return layer{hex: hex, size: l.Size, title: path.Base(l.Annotations[ocispec.AnnotationTitle])}, nil
}

// registryTransient classifies the errors oras-go returns.
func registryTransient(err error) (transient, known bool) {
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode >= 500 || er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests, true
	}
	if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, errdef.ErrSizeExceedsLimit) ||
		errors.Is(err, auth.ErrBasicCredentialNotFound) || errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) {
		return false, true
	}
	return false, false
}
