// Package sourcetest runs what downloads are tested against: Debian's
// docker-registry on a loopback port with an artifact pushed as `oras
// push` does. Tests only; never linked into reconcile.
package sourcetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
)

// StartRegistry runs Debian's docker-registry (distribution 2.8) on a
// loopback port with its storage in a temp dir, and returns host:port.
// With user set, it requires that user's password (htpasswd).
func StartRegistry(t testing.TB, user, password string) string {
	t.Helper()
	pkgbuild.Require(t, "docker-registry")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		config += fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Push pushes tgz as the single layer (titled title) of an artifact
// repo:tag on the registry at addr, as `oras push` does, and returns the
// manifest's digest.
func Push(t testing.TB, addr, repo, tag, title string, tgz []byte, cred auth.Credential) string {
	t.Helper()
	ctx := context.Background()
	r, err := remote.NewRepository(addr + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &auth.Client{Credential: auth.StaticCredential(addr, cred)}
	layer := content.NewDescriptorFromBytes("application/vnd.oci.image.layer.v1.tar+gzip", tgz)
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	if err := r.Push(ctx, layer, bytes.NewReader(tgz)); err != nil {
		t.Fatal(err)
	}
	m, err := oras.PackManifest(ctx, r, oras.PackManifestVersion1_1, "application/vnd.unknown.artifact.v1", oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tag(ctx, m, tag); err != nil {
		t.Fatal(err)
	}
	return m.Digest.String()
}
