package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/source/sourcetest"
)

const (
	nodeRepo = "oss/binaries/kubernetes/kubernetes-node"
	nodeTag  = "v1.34.9-linux-amd64"
)

// fakeBinary is a real amd64 binary that names version, as kubelet does.
func fakeBinary(t testing.TB, version string) []byte {
	t.Helper()
	b, err := pkgbuild.Binary(platform.AMD64, version)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tgz(t testing.TB, files ...pkgtest.File) []byte {
	t.Helper()
	b, err := pkgtest.Compress("gzip", pkgtest.Tar(files))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nodeTarball is kubernetes-node-linux-amd64.tar.gz with kubelet and
// kubectl 1.34.9 in kubernetes/node/bin.
func nodeTarball(t testing.TB) []byte {
	bin := fakeBinary(t, "1.34.9")
	return tgz(t, pkgtest.File{Name: "kubernetes/node/bin/kubelet", Body: bin}, pkgtest.File{Name: "kubernetes/node/bin/kubectl", Body: bin})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// registryProxy is a loopback proxy in front of a registry that lets a
// test break the blob GETs: fault gets the number of each (1, 2, …) and
// answers it itself by returning true.
type registryProxy struct {
	*httptest.Server
	mu    sync.Mutex
	blobs int
}

func newRegistryProxy(t *testing.T, addr string, fault func(n int, w http.ResponseWriter, r *http.Request) bool) *registryProxy {
	p := &registryProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			p.mu.Lock()
			p.blobs++
			n = p.blobs
			p.mu.Unlock()
		}
		if n > 0 && fault != nil && fault(n, w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *registryProxy) blobGETs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blobs
}

func (p *registryProxy) host() string { return strings.TrimPrefix(p.URL, "http://") }

// artifactManifest has kubelet and kubectl 1.34.9 from the kubernetes-node
// artifact on registry host (pinned to digest), and crictl 1.34.0 from the
// tarball at crictlURL (pinned to crictlSHA) when crictlURL is set.
func artifactManifest(host, digest, crictlURL, crictlSHA string) string {
	var b strings.Builder
	b.WriteString("components:\n")
	for _, tool := range []string{"kubelet", "kubectl"} {
		if host == "" {
			break
		}
		fmt.Fprintf(&b, `  - {tool: %s, distro: ubuntu-24.04, version: "1.34.9", arches: [amd64], path: kubernetes/node/bin/%s,
     oci: "%s/%s:v${version}-linux-${arch}", digest: {amd64: "%s"}}
`, tool, tool, host, nodeRepo, digest)
	}
	if crictlURL != "" {
		fmt.Fprintf(&b, `  - {tool: crictl, distro: ubuntu-24.04, version: "1.34.0", k8sVersion: "*", arches: [amd64], path: crictl,
     url: "%s", sha256: {amd64: "%s"}}
`, crictlURL, crictlSHA)
	}
	return b.String()
}

// files lists the regular files under root with their content's digest,
// but the lock, which every run takes.
func files(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "var/lib/reconcile/lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, rel+" "+sha(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type artifactPlan struct {
	Actions []struct {
		Op, Path, Source, Ref, Digest string
		ArtifactFile                  string `json:"artifact_file"`
		CacheDir                      string `json:"cache_dir"`
	}
	Report []struct{ Kind, Code, Message string }
}

func dryRun(t testing.TB, args ...string) artifactPlan {
	t.Helper()
	r := run(t, nil, append([]string{"--dry-run", "--output", "json"}, args...)...).must(t, ExitOK)
	var p artifactPlan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.stdout)
	}
	return p
}

// TestBakeArtifacts: bake pulls the kubernetes-node artifact from a real
// registry once for kubelet and kubectl, downloads crictl's tarball from
// a real HTTP server, extracts all three, records them, and verify and a
// second bake agree; boot installs from them and removes the downloads.
func TestBakeArtifacts(t *testing.T) {
	node := nodeTarball(t)
	reg := sourcetest.StartRegistry(t, "", "")
	digest := sourcetest.Push(t, reg, nodeRepo, nodeTag, "kubernetes-node-linux-amd64.tar.gz", node, auth.EmptyCredential)
	proxy := newRegistryProxy(t, reg, nil)
	crictl := tgz(t, pkgtest.File{Name: "crictl", Body: fakeBinary(t, "1.34.0")})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "crictl.tar.gz", time.Time{}, bytes.NewReader(crictl))
	}))
	defer srv.Close()
	manifest := writeManifest(t, artifactManifest(proxy.host(), digest, srv.URL+"/crictl-v${version}-linux-${arch}.tar.gz", sha(crictl)))
	root := newRoot(t, "ubuntu-24.04")
	args := []string{"--root", root, "--arch", "amd64", manifest}

	p := dryRun(t, args...)
	var downloads []string
	for _, a := range p.Actions {
		if a.Op == "download" {
			downloads = append(downloads, a.Source+" "+a.Ref+" "+a.CacheDir)
		}
	}
	want := []string{
		"oci " + proxy.host() + "/" + nodeRepo + ":v1.34.9-linux-amd64 /opt/kubelet/downloads",
		"url " + srv.URL + "/crictl-v1.34.0-linux-amd64.tar.gz /opt/crictl/downloads",
	}
	if !slices.Equal(downloads, want) {
		t.Fatalf("downloads %q, want %q", downloads, want)
	}

	r := run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, "+ download oci "+proxy.host()+"/"+nodeRepo+":v1.34.9-linux-amd64@"+digest+" into /opt/kubelet/downloads") ||
		!strings.Contains(r.stdout, "+ extract kubectl 1.34.9 from the download of ") {
		t.Errorf("bake output:\n%s", r.stdout)
	}
	if n := proxy.blobGETs(); n != 1 {
		t.Errorf("%d blob GETs for kubelet and kubectl, want 1", n)
	}
	for p, body := range map[string][]byte{"kubelet-1.34.9": fakeBinary(t, "1.34.9"), "kubectl-1.34.9": fakeBinary(t, "1.34.9"), "crictl-1.34.0": fakeBinary(t, "1.34.0")} {
		if got := fileContent(t, filepath.Join(root, "opt/bin", p)); !bytes.Equal(got, body) {
			t.Errorf("/opt/bin/%s is not the binary of the tarball", p)
		}
	}
	var rec struct {
		Files map[string]struct {
			Source struct{ File, Entry, Digest, Ref string }
		}
	}
	if err := json.Unmarshal(fileContent(t, filepath.Join(root, "var/lib/reconcile/state.json")), &rec); err != nil {
		t.Fatal(err)
	}
	src := rec.Files["/opt/bin/kubectl-1.34.9"].Source
	if src.Ref != proxy.host()+"/"+nodeRepo+":v1.34.9-linux-amd64" || src.Digest != digest || src.Entry != "kubernetes/node/bin/kubectl" ||
		src.File != "/opt/kubelet/downloads/sha256-"+sha(node)+".tar.gz" {
		t.Errorf("record source of kubectl: %+v", src)
	}

	// Cached now: a second bake plans nothing, and a baked image whose
	// binaries are gone extracts again from the cache without a download.
	if p := dryRun(t, args...); len(p.Actions) != 0 {
		t.Fatalf("second bake plans %+v", p.Actions)
	}
	run(t, nil, append([]string{"--mode=verify"}, args...)...).must(t, ExitOK)
	os.Remove(filepath.Join(root, "opt/bin/kubectl-1.34.9"))
	p = dryRun(t, append([]string{"--offline"}, args...)...)
	if len(p.Actions) != 1 || p.Actions[0].Op != "extract" || p.Actions[0].ArtifactFile != src.File {
		t.Fatalf("bake with kubectl gone plans %+v, want one extract from %s", p.Actions, src.File)
	}
	run(t, nil, append([]string{"--mode=bake", "--offline"}, args...)...).must(t, ExitOK)
	if n := proxy.blobGETs(); n != 1 {
		t.Errorf("%d blob GETs after the bake from the cache, want still 1", n)
	}

	// A cached tarball is checked against the pin before it is read.
	cached := filepath.Join(root, src.File)
	tarball := fileContent(t, cached)
	broken := slices.Clone(tarball)
	broken[len(broken)/3] ^= 1
	os.WriteFile(cached, broken, 0o644)
	os.Remove(filepath.Join(root, "opt/bin/kubectl-1.34.9"))
	// The record forgets the removed kubectl, as for any file gone: only
	// /opt is compared.
	opt := filepath.Join(root, "opt")
	before := files(t, opt)
	r = run(t, nil, append([]string{"--mode=bake", "--offline"}, args...)...).must(t, ExitFailure)
	if !strings.Contains(r.stderr, "checking the cached artifact (remove it to download it again): /"+src.File[1:]+" has sha256 ") {
		t.Errorf("bake from a corrupt cache:\n%s", r.stderr)
	}
	if after := files(t, opt); !slices.Equal(before, after) {
		t.Errorf("a bake from a corrupt cache wrote files:\nbefore %q\nafter  %q", before, after)
	}
	os.WriteFile(cached, tarball, 0o644)
	run(t, nil, append([]string{"--mode=bake", "--offline"}, args...)...).must(t, ExitOK)

	// verify checks an artifact's binary against the record like a
	// package's.
	kubelet := filepath.Join(root, "opt/bin/kubelet-1.34.9")
	good := fileContent(t, kubelet)
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 1
	fi, _ := os.Stat(kubelet)
	if err := os.WriteFile(kubelet, bad, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(kubelet, fi.ModTime(), fi.ModTime())
	r = run(t, nil, append([]string{"--mode=verify"}, args...)...).must(t, ExitVerify)
	if !strings.Contains(r.stdout, "sha256") {
		t.Errorf("verify of a tampered kubelet:\n%s", r.stdout)
	}
	os.WriteFile(kubelet, good, 0o755)
	os.Chtimes(kubelet, fi.ModTime(), fi.ModTime())
	// A manifest that pins another crictl tarball is not what was baked.
	repinned := writeManifest(t, artifactManifest(proxy.host(), digest, srv.URL+"/crictl-v${version}-linux-${arch}.tar.gz", strings.Repeat("0", 64)))
	r = run(t, nil, "--mode=verify", "--root", root, "--arch", "amd64", repinned).must(t, ExitVerify)
	if !strings.Contains(r.stdout, "the manifest pins sha256:"+strings.Repeat("0", 64)) {
		t.Errorf("verify against a repinned manifest:\n%s", r.stdout)
	}
	run(t, nil, append([]string{"--mode=verify"}, args...)...).must(t, ExitOK)

	// Boot installs the versioned binaries and removes the downloads.
	env := map[string]string{"KUBERNETES_VERSION": "1.34.9"}
	run(t, env, append([]string{"--mode=boot"}, args...)...).must(t, ExitOK)
	if !bytes.Equal(fileContent(t, filepath.Join(root, "opt/bin/kubelet")), fakeBinary(t, "1.34.9")) {
		t.Error("/opt/bin/kubelet is not 1.34.9")
	}
	for _, gone := range []string{"opt/kubelet/downloads", "opt/crictl/downloads", "opt/bin/kubelet-1.34.9"} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("%s still there after boot", gone)
		}
	}
	r = run(t, env, append([]string{"--dry-run", "--mode=boot"}, args...)...).must(t, ExitOK)
	if !strings.HasPrefix(r.stdout, "No changes") {
		t.Errorf("second boot plans:\n%s", r.stdout)
	}
}

// TestBakeArtifactFailures: each broken download or hostile tarball is a
// clear error (exit 1 at bake) that writes nothing under the root; a
// server that fails once and then answers is retried and succeeds.
func TestBakeArtifactFailures(t *testing.T) {
	node := nodeTarball(t)
	reg := sourcetest.StartRegistry(t, "", "")
	digest := sourcetest.Push(t, reg, nodeRepo, nodeTag, "kubernetes-node-linux-amd64.tar.gz", node, auth.EmptyCredential)
	crictl := tgz(t, pkgtest.File{Name: "crictl", Body: fakeBinary(t, "1.34.0")})
	serveBody := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "crictl.tar.gz", time.Time{}, bytes.NewReader(body))
		}
	}
	linkOut := tgz(t, pkgtest.File{Name: "crictl", Type: '2', Linkname: "../../../../etc/shadow"})
	traversal := tgz(t, pkgtest.File{Name: "crictl", Body: fakeBinary(t, "1.34.0")}, pkgtest.File{Name: "../../etc/cron.d/evil", Body: []byte("* * * * * root sh")})
	fast := []string{"--download-attempts", "2", "--download-stall-timeout", "300ms"}
	tests := []struct {
		name string
		// url serves crictl; nil means the OCI artifact through a proxy
		// whose blob GETs fault answers.
		url   http.HandlerFunc
		pin   []byte
		fault func(n int, w http.ResponseWriter, r *http.Request) bool
		code  int
		msg   string
	}{
		{name: "wrong digest", url: serveBody(crictl), pin: []byte("another tarball"), code: ExitFailure, msg: "digest mismatch"},
		{name: "truncated", pin: crictl, code: ExitFailure, msg: "unexpected EOF", url: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(crictl)))
			w.Write(crictl[:len(crictl)/2])
			w.(http.Flusher).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		}},
		{name: "link out", url: serveBody(linkOut), pin: linkOut, code: ExitFailure, msg: "which leaves the archive"},
		{name: "traversal", url: serveBody(traversal), pin: traversal, code: ExitFailure, msg: "escapes the archive root"},
		{name: "registry 500 then 200", code: ExitOK, fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				http.Error(w, "try again", http.StatusInternalServerError)
				return true
			}
			return false
		}},
		{name: "registry hangs", code: ExitFailure, msg: "connection stalled", fault: func(_ int, _ http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done()
			return true
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var text string
			if tc.url != nil {
				srv := httptest.NewServer(tc.url)
				defer srv.Close()
				text = artifactManifest("", "", srv.URL+"/crictl.tar.gz", sha(tc.pin))
			} else {
				text = artifactManifest(newRegistryProxy(t, reg, tc.fault).host(), digest, "", "")
			}
			root := newRoot(t, "ubuntu-24.04")
			args := append([]string{"--mode=bake", "--root", root, "--arch", "amd64", writeManifest(t, text)}, fast...)
			before := files(t, root)
			r := run(t, nil, args...).must(t, tc.code)
			if tc.code == ExitOK {
				if !exists(filepath.Join(root, "opt/bin/kubelet-1.34.9")) || !strings.Contains(r.stderr, "retrying") {
					t.Fatalf("no kubelet after a retry; stderr:\n%s", r.stderr)
				}
				return
			}
			if !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("stderr does not say %q:\n%s", tc.msg, r.stderr)
			}
			if after := files(t, root); !slices.Equal(before, after) {
				t.Errorf("a failed bake wrote files:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestArtifactAndPackageVersions: kubelet and kubectl 1.34.9 from an OCI
// artifact and 1.35.7 from cached packages bake together; boot picks either
// by --k8s-version, and a second boot plans nothing.
func TestArtifactAndPackageVersions(t *testing.T) {
	node := nodeTarball(t)
	reg := sourcetest.StartRegistry(t, "", "")
	digest := sourcetest.Push(t, reg, nodeRepo, nodeTag, "kubernetes-node-linux-amd64.tar.gz", node, auth.EmptyCredential)
	text := artifactManifest(reg, digest, "", "") + `  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`
	manifest := writeManifest(t, text)
	for _, v := range []string{"1.34.9", "1.35.7"} {
		t.Run(v, func(t *testing.T) {
			root := newRoot(t, "ubuntu-24.04")
			for _, tool := range []string{"kubelet", "kubectl"} {
				cache(t, root, tool, pkg(t, platform.Deb, tool, "1.35.7-ubuntu24.04u1", platform.AMD64), "")
			}
			args := []string{"--root", root, "--arch", "amd64", manifest}
			run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)
			for _, b := range []string{"kubelet-1.34.9", "kubectl-1.34.9", "kubelet-1.35.7", "kubectl-1.35.7"} {
				if !exists(filepath.Join(root, "opt/bin", b)) {
					t.Fatalf("bake made no /opt/bin/%s", b)
				}
			}
			run(t, nil, append([]string{"--mode=verify"}, args...)...).must(t, ExitOK)
			env := map[string]string{"KUBERNETES_VERSION": v}
			run(t, env, append([]string{"--mode=boot"}, args...)...).must(t, ExitOK)
			for _, tool := range []string{"kubelet", "kubectl"} {
				if out := runBinary(t, filepath.Join(root, "opt/bin", tool)); !strings.Contains(out, "v"+v) {
					t.Errorf("/opt/bin/%s says %q, want v%s", tool, out, v)
				}
			}
			run(t, env, append([]string{"--mode=verify", "--targets"}, args...)...).must(t, ExitOK)
			if p := dryRun(t, append([]string{"--mode=boot", "--k8s-version", v}, args...)...); len(p.Actions) != 0 {
				t.Errorf("second boot plans %+v", p.Actions)
			}
		})
	}
}

// TestBootDownloadsArtifact: a node whose image baked nothing for the
// version downloads the artifact at boot and extracts to the target; with
// --offline it fails with the tool's code and writes nothing.
func TestBootDownloadsArtifact(t *testing.T) {
	node := nodeTarball(t)
	reg := sourcetest.StartRegistry(t, "", "")
	digest := sourcetest.Push(t, reg, nodeRepo, nodeTag, "kubernetes-node-linux-amd64.tar.gz", node, auth.EmptyCredential)
	manifest := writeManifest(t, artifactManifest(reg, digest, "", ""))
	root := newRoot(t, "ubuntu-24.04")
	args := []string{"--mode=boot", "--k8s-version", "1.34.9", "--root", root, "--arch", "amd64", manifest}
	before := files(t, root)
	r := run(t, nil, append([]string{"--offline"}, args...)...).must(t, 121)
	if !strings.Contains(r.stderr, "is not in /opt/kubelet/downloads or /opt/kubectl/downloads, and --offline forbids downloading it") {
		t.Errorf("offline boot:\n%s", r.stderr)
	}
	if after := files(t, root); !slices.Equal(before, after) {
		t.Errorf("a failed boot wrote files: %q", after)
	}
	run(t, nil, args...).must(t, ExitOK)
	for _, tool := range []string{"kubelet", "kubectl"} {
		if !bytes.Equal(fileContent(t, filepath.Join(root, "opt/bin", tool)), fakeBinary(t, "1.34.9")) {
			t.Errorf("/opt/bin/%s is not the artifact's", tool)
		}
	}
	if exists(filepath.Join(root, "opt/kubelet/downloads")) {
		t.Error("boot left its download behind")
	}
	if p := dryRun(t, args...); len(p.Actions) != 0 {
		t.Errorf("second boot plans %+v", p.Actions)
	}
}

// TestArtifactOutputsMatchTheirSchemas validates the documents of a bake
// that downloads (plan, applied with a download's result, a failure) and
// every golden plan of internal/plan against their schemas.
func TestArtifactOutputsMatchTheirSchemas(t *testing.T) {
	s := schemas(t)
	crictl := tgz(t, pkgtest.File{Name: "crictl", Body: fakeBinary(t, "1.34.0")})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "crictl.tar.gz", time.Time{}, bytes.NewReader(crictl))
	}))
	defer srv.Close()
	manifest := writeManifest(t, artifactManifest("", "", srv.URL+"/crictl.tar.gz", sha(crictl)))
	root := newRoot(t, "ubuntu-24.04")
	args := func(extra ...string) []string {
		return append(append([]string{"--output", "json", "--root", root, "--arch", "amd64"}, extra...), manifest)
	}
	docs := map[string]string{
		"offline bake": run(t, nil, args("--mode=bake", "--offline")...).must(t, ExitFailure).stdout,
		"bake dry-run": run(t, nil, args("--dry-run")...).must(t, ExitOK).stdout,
		"bake":         run(t, nil, args("--mode=bake")...).must(t, ExitOK).stdout,
	}
	goldens, err := filepath.Glob("../plan/testdata/*.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden plans: %v", err)
	}
	for _, g := range goldens {
		docs[g] = string(fileContent(t, g))
	}
	for name, text := range docs {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, text)
		}
		kind, _ := doc.(map[string]any)["kind"].(string)
		if err := s[kind].Validate(doc); err != nil {
			t.Errorf("%s: the %s document does not match its schema: %v", name, kind, err)
		}
	}
	if !strings.Contains(docs["bake"], `"op": "download"`) {
		t.Errorf("the applied document has no download:\n%s", docs["bake"])
	}
}

// TestOfflineBootFetchesNoPackage: --offline forbids the package manager's
// fetch at boot as it forbids downloads: the tool's code, nothing written.
func TestOfflineBootFetchesNoPackage(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions)
	before := files(t, root)
	r := run(t, nil, "--mode=boot", "--offline", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", manifest).must(t, 121)
	if !strings.Contains(r.stderr, "and --offline forbids fetching it") {
		t.Errorf("offline boot:\n%s", r.stderr)
	}
	if after := files(t, root); !slices.Equal(before, after) {
		t.Errorf("an offline boot wrote files: %q", after)
	}
}
