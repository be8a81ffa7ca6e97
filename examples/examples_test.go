// Package examples_test runs the example pipeline scripts as the pipelines
// would: pr-check.sh as the pull-request workflow calls it, packer/bake.sh as
// the Packer provisioner runs it at image build, and boot/provision-kubelet.sh
// as node provisioning runs it at boot, each against a temporary root.
package examples_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/source/sourcetest"
	"github.com/nodeimage/reconcile/manifests"
)

// reconcileBin is the binary TestMain builds, as the pipelines build it.
var reconcileBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reconcile-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reconcileBin = filepath.Join(dir, "reconcile")
	cmd := exec.Command("go", "build", "-o", reconcileBin, "../cmd/reconcile")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building reconcile: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code   int
	output string // stdout and stderr, interleaved
}

// script runs an example script with only the environment given (and PATH,
// HOME), so nothing of the test runner's environment leaks in.
func script(t *testing.T, env map[string]string, name string, args ...string) result {
	t.Helper()
	pkgbuild.Require(t, "bash")
	cmd := exec.Command("bash", append([]string{name}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return result{0, out.String()}
	case errors.As(err, &ee):
		return result{ee.ExitCode(), out.String()}
	}
	t.Fatalf("running %s: %v", name, err)
	return result{}
}

func (r result) must(t *testing.T, code int, wants ...string) result {
	t.Helper()
	if testing.Verbose() {
		t.Logf("exit %d:\n%s", r.code, r.output)
	}
	if r.code != code {
		t.Fatalf("exit %d, want %d\n%s", r.code, code, r.output)
	}
	for _, w := range wants {
		if !strings.Contains(r.output, w) {
			t.Errorf("output lacks %q:\n%s", w, r.output)
		}
	}
	return r
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPRCheckPlansEveryDistroAndArch(t *testing.T) {
	m, err := manifest.Parse(manifests.Name, manifests.Components)
	if err != nil {
		t.Fatal(err)
	}
	r := script(t, map[string]string{"RECONCILE": reconcileBin}, "pr-check.sh", "../manifests/components.yaml")
	r.must(t, 0, fmt.Sprintf("pr-check: all %d plans computed: every served version boots", 2*len(m.Distros())))
	for _, d := range m.Distros() {
		for _, a := range platform.Arches {
			r.must(t, 0, fmt.Sprintf("== ../manifests/components.yaml: %s %s\nboot plan for %s %s for Kubernetes ", d, a, d, a))
		}
	}
	// In GitHub Actions each plan is a group.
	r = script(t, map[string]string{"RECONCILE": reconcileBin, "GITHUB_ACTIONS": "true", "ARCHES": "arm64"}, "pr-check.sh", "../manifests/components.yaml")
	r.must(t, 0, "::group::../manifests/components.yaml: ubuntu-24.04 arm64\n", "::endgroup::")
}

// TestPRCheckFailsOnAnUnservedLine: a valid manifest whose kubelet serves a
// line the credential provider has no entry for fails the check with the
// code that boot would exit with there.
func TestPRCheckFailsOnAnUnservedLine(t *testing.T) {
	gap := filepath.Join(t.TempDir(), "gap.yaml")
	writeFile(t, gap, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.37.1-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.37.1-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.36.5-ubuntu24.04u1", k8sVersion: "1.36"}
`)
	script(t, map[string]string{"RECONCILE": reconcileBin}, "pr-check.sh", gap).must(t, 1,
		"problem: no azure-acr-credential-provider entry for ubuntu-24.04 amd64 serves Kubernetes 1.37.1",
		"a boot on ubuntu-24.04 amd64 of a version it serves would exit 205", "pr-check: 2 of 2 plans failed")
}

func TestPRCheckFailsOnBrokenManifests(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, `components:
  - {tool: kubelet, distro: "ubuntu-24.04", packageVersion: "1.34.10-1"} # distro: fake-1
  - tool: kubectl
    distro: 'ubuntu-24.04'
    packageVersion: "1.34.10-1"
`)
	tests := []struct {
		name, yaml string
		wants      []string
	}{{
		name:  "unquoted number",
		yaml:  "components:\n  - tool: kubelet\n    distro: ubuntu-24.04\n    packageVersion: 1.30\n",
		wants: []string{"line 4: components[0].packageVersion", "quote it"},
	}, {
		name:  "misspelt field",
		yaml:  "components:\n  - tool: kubelet\n    distro: azurelinux-3.0\n    packageVerison: \"1.34.10-1.azl3\"\n",
		wants: []string{"components[0].packageVerison"},
	}, {
		name:  "no distro",
		yaml:  "components:\n  - tool: kubelet\n    packageVersion: \"1.34.10-1\"\n",
		wants: []string{"components[0].distro"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			writeFile(t, bad, tc.yaml)
			// The good manifest is still planned: one run reports everything.
			r := script(t, map[string]string{"RECONCILE": reconcileBin, "GITHUB_ACTIONS": "true"}, "pr-check.sh", good, bad)
			r.must(t, 1, append(tc.wants, "::error file="+bad+"::", "pr-check: 1 of 3 plans failed",
				"::group::"+good+": ubuntu-24.04 amd64", "::group::"+good+": ubuntu-24.04 arm64")...)
			if strings.Contains(r.output, "fake-1") {
				t.Errorf("a distro in a comment was planned:\n%s", r.output)
			}
		})
	}
	script(t, map[string]string{"RECONCILE": reconcileBin}, "pr-check.sh").must(t, 2, "usage")
	script(t, map[string]string{"RECONCILE": filepath.Join(dir, "nothing")}, "pr-check.sh", good).must(t, 2, "not found")
}

// TestWorkflowRunsPRCheck holds the workflow to the script this file tests.
func TestWorkflowRunsPRCheck(t *testing.T) {
	data, err := os.ReadFile("../.github/workflows/manifests.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		On struct {
			PullRequest struct {
				Paths []string `yaml:"paths"`
			} `yaml:"pull_request"`
		} `yaml:"on"`
		Jobs map[string]struct {
			Steps []struct {
				Run string            `yaml:"run"`
				Env map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	if !contains(wf.On.PullRequest.Paths, "manifests/**") || !contains(wf.On.PullRequest.Paths, "examples/pr-check.sh") {
		t.Errorf("pull_request paths %q: want manifests/** and examples/pr-check.sh", wf.On.PullRequest.Paths)
	}
	var build, check, dnf bool
	for _, job := range wf.Jobs {
		for _, s := range job.Steps {
			if strings.Contains(s.Run, "apt-get install") && strings.Contains(s.Run, " dnf") {
				dnf = true
			}
			if strings.Contains(s.Run, "go build -trimpath -buildvcs=true -o \"$RUNNER_TEMP/reconcile\" ./cmd/reconcile") && s.Env["CGO_ENABLED"] == "0" {
				build = true
			}
			if strings.HasPrefix(s.Run, "examples/pr-check.sh manifests/") && s.Env["RECONCILE"] == "${{ runner.temp }}/reconcile" {
				check = true
			}
		}
	}
	if !build || !check || !dnf {
		t.Errorf("the workflow builds reconcile: %v; runs examples/pr-check.sh with it: %v; installs dnf for the rpm distros' plans: %v", build, check, dnf)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// smallManifest is what the bake and boot test image carries.
const smallManifest = `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.34.13-ubuntu24.04u1", k8sVersion: "1.34"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.35.8-ubuntu24.04u1", k8sVersion: "1.35"}
`

// cachedImage is an ubuntu-24.04 root with real packages of smallManifest in
// /opt/<tool>/downloads, as the pipeline's download step leaves it.
func cachedImage(t *testing.T) (root, manifestFile string) {
	t.Helper()
	pkgbuild.RequireFormat(t, platform.Deb)
	root = t.TempDir()
	writeFile(t, filepath.Join(root, "etc/os-release"), "ID=ubuntu\nVERSION_ID=\"24.04\"\n")
	manifestFile = filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, manifestFile, smallManifest)
	m, err := manifest.Load(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	arch := platform.Host()
	pkgs := t.TempDir()
	for _, c := range m.Components {
		upstream := c.PackageVersion[:strings.LastIndexByte(c.PackageVersion, '-')]
		bin, err := pkgbuild.Binary(arch, upstream)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pkgbuild.Deb(pkgs, pkgbuild.Spec{Name: c.Tool, Version: c.PackageVersion, Arch: arch,
			Files: map[string][]byte{"usr/bin/" + c.Tool: bin}})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "opt", c.Tool, "downloads", filepath.Base(p)), string(data))
	}
	return root, manifestFile
}

func runBinary(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("running %s: %v", p, err)
	}
	return string(out)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestPackerBakeThenBoot is an image's life: bake.sh at build, then
// provision-kubelet.sh at boot, first for a cluster version the manifest does
// not serve, then for one it does.
func TestPackerBakeThenBoot(t *testing.T) {
	root, manifestFile := cachedImage(t)
	script(t, map[string]string{"RECONCILE": reconcileBin, "MANIFEST": manifestFile, "ROOT": root}, "packer/bake.sh").
		must(t, 0, "bake: reconcile --mode=bake --root "+root, "verify: all 6 binaries match the manifest.")
	for _, p := range []string{"usr/local/bin/reconcile", "etc/reconcile/components.yaml", "opt/bin/kubelet-1.34.10", "opt/bin/kubelet-1.35.7", "opt/bin/azure-acr-credential-provider-1.35.8"} {
		if !exists(filepath.Join(root, p)) {
			t.Errorf("/%s missing after bake", p)
		}
	}
	if got := runBinary(t, filepath.Join(root, "opt/bin/kubectl-1.35.7")); got != "Kubernetes v1.35.7\n" {
		t.Errorf("baked kubectl reports %q", got)
	}

	boot := func(env map[string]string) result {
		env["ROOT"] = root // RECONCILE and MANIFEST: where bake.sh put them
		return script(t, env, "boot/provision-kubelet.sh")
	}
	t.Run("no version", func(t *testing.T) {
		boot(map[string]string{}).must(t, 2, "KUBERNETES_VERSION is not set")
	})
	t.Run("version not in the manifest", func(t *testing.T) {
		// kubelet and kubectl 1.33.4 would be fetched (their entries name
		// exact versions), but no credential provider entry serves the 1.33
		// line: its code, and nothing is put in place.
		r := boot(map[string]string{"KUBERNETES_VERSION": "1.33.4"}).must(t, 205, "exit 205 (the ACR credential provider could not be put in place)", "1.33.4")
		if exists(filepath.Join(root, "opt/bin/kubelet")) {
			t.Errorf("a kubelet target appeared after a failed boot:\n%s", r.output)
		}
	})
	t.Run("bad SHOULD_ENFORCE_KUBE_PMC_INSTALL", func(t *testing.T) {
		boot(map[string]string{"KUBERNETES_VERSION": "1.35.7", "SHOULD_ENFORCE_KUBE_PMC_INSTALL": "yes"}).must(t, 2, "exit 2 (bad input")
	})
	t.Run("served version", func(t *testing.T) {
		r := boot(map[string]string{"KUBERNETES_VERSION": "1.35.7", "SHOULD_ENFORCE_KUBE_PMC_INSTALL": "false"})
		r.must(t, 0, "reconcile --mode=boot --root "+root+" "+filepath.Join(root, "etc/reconcile/components.yaml"),
			"rename /opt/bin/kubelet-1.35.7 to /opt/bin/kubelet", `reports "Kubernetes v1.35.7"`, "exit 0 (ok)")
		for p, want := range map[string]string{
			"opt/bin/kubelet": "Kubernetes v1.35.7\n",
			"opt/bin/kubectl": "Kubernetes v1.35.7\n",
			"var/lib/kubelet/credential-provider/acr-credential-provider": "Kubernetes v1.35.8\n",
		} {
			if got := runBinary(t, filepath.Join(root, p)); got != want {
				t.Errorf("/%s reports %q, want %q", p, got, want)
			}
		}
		for _, gone := range []string{"opt/bin/kubelet-1.34.10", "opt/bin/kubelet-1.35.7", "opt/kubelet/downloads"} {
			if exists(filepath.Join(root, gone)) {
				t.Errorf("/%s still there after boot", gone)
			}
		}
		log, err := os.ReadFile(filepath.Join(root, "var/log/reconcile/boot.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"Kubernetes 1.35.7, SHOULD_ENFORCE_KUBE_PMC_INSTALL=false", "rename /opt/bin/kubelet-1.35.7", "exit 0 (ok)"} {
			if !bytes.Contains(log, []byte(w)) {
				t.Errorf("boot.log lacks %q:\n%s", w, log)
			}
		}
		// A reboot runs it again: nothing to do, still 0.
		boot(map[string]string{"KUBERNETES_VERSION": "1.35.7"}).must(t, 0, "No changes", "exit 0 (ok)")
	})
}

// TestPackerBakesPackagesAndArtifacts runs bake.sh on packer/components.yaml
// with its artifacts served from loopback (a real docker-registry for the
// kubernetes-node artifact, an HTTP server for crictl's tarball; only the
// hosts and the pins of this arch are replaced), then boots the artifact's
// version.
func TestPackerBakesPackagesAndArtifacts(t *testing.T) {
	pkgbuild.RequireFormat(t, platform.Deb)
	arch := platform.Host()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/os-release"), "ID=ubuntu\nVERSION_ID=\"24.04\"\n")
	binary := func(version string) []byte {
		b, err := pkgbuild.Binary(arch, version)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pkgs := t.TempDir()
	for _, tool := range []string{"kubelet", "kubectl"} {
		p, err := pkgbuild.Deb(pkgs, pkgbuild.Spec{Name: tool, Version: "1.35.7-ubuntu24.04u1", Arch: arch,
			Files: map[string][]byte{"usr/bin/" + tool: binary("1.35.7")}})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "opt", tool, "downloads", filepath.Base(p)), string(data))
	}
	tarball := func(files ...pkgtest.File) []byte {
		b, err := pkgtest.Compress("gzip", pkgtest.Tar(files))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	node := tarball(pkgtest.File{Name: "kubernetes/node/bin/kubelet", Body: binary("1.34.9")}, pkgtest.File{Name: "kubernetes/node/bin/kubectl", Body: binary("1.34.9")})
	reg := sourcetest.StartRegistry(t, "", "")
	digest := sourcetest.Push(t, reg, "oss/binaries/kubernetes/kubernetes-node", "v1.34.9-linux-"+string(arch),
		"kubernetes-node-linux-"+string(arch)+".tar.gz", node, auth.EmptyCredential)
	crictl := tarball(pkgtest.File{Name: "crictl", Body: binary("1.34.0")})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kubernetes-sigs/cri-tools/releases/download/v1.34.0/crictl-v1.34.0-linux-"+string(arch)+".tar.gz" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "crictl.tar.gz", time.Time{}, bytes.NewReader(crictl))
	}))
	defer srv.Close()

	text, err := os.ReadFile("packer/components.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ociPin, urlPin := map[platform.Arch]string{platform.AMD64: "1", platform.ARM64: "2"}[arch], map[platform.Arch]string{platform.AMD64: "3", platform.ARM64: "4"}[arch]
	sum := sha256.Sum256(crictl)
	manifestText := strings.NewReplacer(
		"mcr.microsoft.com", reg,
		"https://github.com", srv.URL,
		"sha256:"+strings.Repeat(ociPin, 64), digest,
		strings.Repeat(urlPin, 64), hex.EncodeToString(sum[:]),
	).Replace(string(text))
	manifestFile := filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, manifestFile, manifestText)

	script(t, map[string]string{"RECONCILE": reconcileBin, "MANIFEST": manifestFile, "ROOT": root}, "packer/bake.sh").
		must(t, 0, "+ download oci "+reg+"/oss/binaries/kubernetes/kubernetes-node:v1.34.9-linux-"+string(arch), "verify: all 5 binaries match the manifest.")
	for p, want := range map[string]string{"kubelet-1.34.9": "v1.34.9", "kubectl-1.34.9": "v1.34.9", "kubelet-1.35.7": "v1.35.7", "crictl-1.34.0": "v1.34.0"} {
		if got := runBinary(t, filepath.Join(root, "opt/bin", p)); !strings.Contains(got, want) {
			t.Errorf("/opt/bin/%s reports %q, want %s", p, got, want)
		}
	}
	script(t, map[string]string{"KUBERNETES_VERSION": "1.34.9", "ROOT": root}, "boot/provision-kubelet.sh").
		must(t, 0, "rename /opt/bin/kubelet-1.34.9 to /opt/bin/kubelet", "exit 0 (ok)")
	if got := runBinary(t, filepath.Join(root, "opt/bin/kubelet")); !strings.Contains(got, "v1.34.9") {
		t.Errorf("/opt/bin/kubelet reports %q after boot for 1.34.9", got)
	}
}
