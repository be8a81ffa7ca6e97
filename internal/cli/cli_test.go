package cli

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/manifests"
)

// pkgCache builds each package once per test binary; roots get copies.
var pkgCache struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// pkg returns a real package of tool at version for arch holding a fake
// binary that reports the upstream version.
func pkg(t testing.TB, f platform.Format, tool, version string, arch platform.Arch) string {
	t.Helper()
	pkgbuild.RequireFormat(t, f)
	pkgCache.Lock()
	defer pkgCache.Unlock()
	key := strings.Join([]string{string(f), tool, version, string(arch)}, " ")
	if p, ok := pkgCache.paths[key]; ok {
		return p
	}
	if pkgCache.paths == nil {
		dir, err := os.MkdirTemp("", "reconcile-cli-pkgs-")
		if err != nil {
			t.Fatal(err)
		}
		pkgCache.dir, pkgCache.paths = dir, map[string]string{}
	}
	upstream := version[strings.IndexByte(version, ':')+1:]
	upstream = upstream[:strings.LastIndexByte(upstream, '-')]
	bin, err := pkgbuild.Binary(arch, upstream)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(pkgCache.dir, "p")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkgbuild.Build(f, dir, pkgbuild.Spec{Name: tool, Version: version, Arch: arch,
		Files: map[string][]byte{"usr/bin/" + tool: bin}, Depends: []string{"iptables", "conntrack"}})
	if err != nil {
		t.Fatal(err)
	}
	pkgCache.paths[key] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pkgCache.dir != "" {
		os.RemoveAll(pkgCache.dir)
	}
	os.Exit(code)
}

// newRoot is a temp root that says it is distro in its os-release.
func newRoot(t testing.TB, distro string) string {
	t.Helper()
	root := t.TempDir()
	id, ver, _ := strings.Cut(distro, "-")
	writeFile(t, filepath.Join(root, "etc/os-release"), fmt.Sprintf("ID=%s\nVERSION_ID=\"%s\"\n", id, ver))
	return root
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cache copies a package into root's cache dir for tool under name (the
// file name need not tell the truth).
func cache(t testing.TB, root, tool, src, name string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		name = filepath.Base(src)
	}
	writeFile(t, filepath.Join(root, "opt", tool, "downloads", name), string(data))
}

// writeManifest writes yaml to a components.yaml of the test's own and
// returns its path.
func writeManifest(t testing.TB, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, p, yaml)
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	return runStdin(t, env, strings.NewReader(""), args...)
}

func runStdin(t testing.TB, env map[string]string, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, func(k string) string { return env[k] }, stdin, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) must(t testing.TB, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// planOps runs a JSON dry-run and returns "op path" per action.
func planOps(t testing.TB, args ...string) []string {
	t.Helper()
	r := run(t, nil, append([]string{"--dry-run", "--output", "json"}, args...)...).must(t, ExitOK)
	var p struct {
		Actions []struct{ Op, Path string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.stdout)
	}
	var ops []string
	for _, a := range p.Actions {
		ops = append(ops, a.Op+" "+a.Path)
	}
	return ops
}

func fileContent(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

const twoVersions = `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`

// bakedRoot is a root with the packages of twoVersions cached and baked.
func bakedRoot(t *testing.T) (root, manifest string) {
	t.Helper()
	root, manifest, _ = bakedRootWith(t, twoVersions)
	return root, manifest
}

// bakedRootWith caches kubelet and kubectl 1.34.10 and 1.35.7 debs and bakes
// the given manifest; args are --root, --arch and the manifest.
func bakedRootWith(t *testing.T, manifestText string) (root, manifest string, args []string) {
	t.Helper()
	root = newRoot(t, "ubuntu-24.04")
	manifest = filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, manifest, manifestText)
	for _, tool := range []string{"kubelet", "kubectl"} {
		for _, v := range []string{"1.34.10-ubuntu24.04u1", "1.35.7-ubuntu24.04u1"} {
			cache(t, root, tool, pkg(t, platform.Deb, tool, v, platform.AMD64), "")
		}
	}
	args = []string{"--root", root, "--arch", "amd64", manifest}
	run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)
	return root, manifest, args
}

func TestBakeVerifyBootVerify(t *testing.T) {
	root, manifest := bakedRoot(t)
	args := []string{"--root", root, "--arch", "amd64", manifest}
	for _, v := range []string{"1.34.10", "1.35.7"} {
		for _, tool := range []string{"kubelet", "kubectl"} {
			p := filepath.Join(root, "opt/bin", tool+"-"+v)
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Fatalf("%s: %v %v", p, fi, err)
			}
		}
	}
	if ops := planOps(t, args...); len(ops) != 0 {
		t.Fatalf("second bake plans %v, want nothing", ops)
	}
	run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)

	r := run(t, nil, append([]string{"--mode=verify", "--exec"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, `reports "Kubernetes v1.35.7"`) {
		t.Errorf("verify --exec output lacks the reported version:\n%s", r.stdout)
	}

	env := map[string]string{"KUBERNETES_VERSION": "1.35.7"}
	// KUBERNETES_VERSION in a build's environment does not turn verify of
	// the baked image into a check of the boot targets.
	r = run(t, env, append([]string{"--mode=verify"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, "verify: checking the versioned binaries") {
		t.Errorf("verify does not say what it checks:\n%s", r.stdout)
	}
	want := fileContent(t, filepath.Join(root, "opt/bin/kubelet-1.35.7"))
	r = run(t, env, append([]string{"--mode=boot"}, args...)...).must(t, ExitOK)
	if got := fileContent(t, filepath.Join(root, "opt/bin/kubelet")); !bytes.Equal(got, want) {
		t.Fatal("boot target is not the 1.35.7 binary")
	}
	for _, gone := range []string{"opt/bin/kubelet-1.34.10", "opt/bin/kubelet-1.35.7", "opt/bin/kubectl-1.34.10", "opt/kubelet/downloads", "opt/kubectl/downloads"} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("%s still there after boot", gone)
		}
	}
	if !strings.Contains(r.stdout, "> install kubelet 1.35.7-ubuntu24.04u1: rename /opt/bin/kubelet-1.35.7 to /opt/bin/kubelet") {
		t.Errorf("boot output:\n%s", r.stdout)
	}
	r = run(t, env, append([]string{"--mode=verify", "--targets", "--exec"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, "verify: checking the boot targets for Kubernetes 1.35.7") ||
		!strings.Contains(r.stdout, "ok   /opt/bin/kubectl (kubectl 1.35.7-ubuntu24.04u1)") {
		t.Errorf("verify of the targets:\n%s", r.stdout)
	}
	if ops := planOps(t, append([]string{"--mode=boot", "--k8s-version", "1.35.7"}, args...)...); len(ops) != 0 {
		t.Fatalf("second boot plans %v, want nothing", ops)
	}
	r = run(t, env, append([]string{"--mode=boot"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, "No changes") {
		t.Errorf("second boot output:\n%s", r.stdout)
	}
}

func TestBootDecisions(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, root string)
		flags   []string
		want    []string // planned "op path", in order
		note    string   // a note the plan must carry
	}{{
		name: "versioned binary present",
		want: []string{"install /opt/bin/kubelet", "install /opt/bin/kubectl",
			"remove /opt/bin/kubelet-1.34.10", "remove_cache /opt/kubelet/downloads",
			"remove /opt/bin/kubectl-1.34.10", "remove_cache /opt/kubectl/downloads"},
	}, {
		name:  "package install enforced",
		flags: []string{"--enforce-package-install"},
		want: []string{"extract /opt/bin/kubelet", "extract /opt/bin/kubectl",
			"remove /opt/bin/kubelet-1.34.10", "remove /opt/bin/kubelet-1.35.7", "remove_cache /opt/kubelet/downloads",
			"remove /opt/bin/kubectl-1.34.10", "remove /opt/bin/kubectl-1.35.7", "remove_cache /opt/kubectl/downloads"},
	}, {
		name:  "keep the cache",
		flags: []string{"--keep-cache"},
		want: []string{"install /opt/bin/kubelet", "install /opt/bin/kubectl",
			"remove /opt/bin/kubelet-1.34.10", "remove /opt/bin/kubectl-1.34.10"},
	}, {
		name: "versioned binary missing: cached package",
		prepare: func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "opt/bin/kubelet-1.35.7"))
		},
		want: []string{"extract /opt/bin/kubelet", "install /opt/bin/kubectl",
			"remove /opt/bin/kubelet-1.34.10", "remove_cache /opt/kubelet/downloads",
			"remove /opt/bin/kubectl-1.34.10", "remove_cache /opt/kubectl/downloads"},
	}, {
		name: "versioned binary tampered: cached package",
		prepare: func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "opt/bin/kubelet-1.35.7"), "#!/bin/sh\necho evil\n")
		},
		want: []string{"extract /opt/bin/kubelet", "install /opt/bin/kubectl",
			"remove /opt/bin/kubelet-1.34.10", "remove /opt/bin/kubelet-1.35.7", "remove_cache /opt/kubelet/downloads",
			"remove /opt/bin/kubectl-1.34.10", "remove_cache /opt/kubectl/downloads"},
		note: "/opt/bin/kubelet-1.35.7 does not match the state record",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, manifest := bakedRoot(t)
			if tc.prepare != nil {
				tc.prepare(t, root)
			}
			args := append([]string{"--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64"}, tc.flags...)
			args = append(args, manifest)
			if got := planOps(t, args...); !slices.Equal(got, tc.want) {
				t.Fatalf("plan:\n got %q\nwant %q", got, tc.want)
			}
			if tc.note != "" {
				if r := run(t, nil, append([]string{"--dry-run"}, args...)...); !strings.Contains(r.stdout, tc.note) {
					t.Errorf("plan text lacks note %q:\n%s", tc.note, r.stdout)
				}
			}
			run(t, nil, args...).must(t, ExitOK)
			for _, tool := range []string{"kubelet", "kubectl"} {
				out := runBinary(t, filepath.Join(root, "opt/bin", tool))
				if out != "Kubernetes v1.35.7\n" {
					t.Errorf("%s reports %q", tool, out)
				}
			}
			if got := planOps(t, args...); len(got) != 0 {
				t.Fatalf("boot again plans %q, want nothing", got)
			}
			run(t, nil, "--mode=verify", "--k8s-version", "1.35.7", "--exec", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		})
	}
}

func TestBootWithNothingFails(t *testing.T) {
	pkgbuild.RequireFormat(t, platform.Deb)
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions)
	// An empty apt repository: the package manager step finds nothing.
	repo := emptyAptRepo(t)
	args := append([]string{"--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64"}, repo...)
	r := run(t, nil, append(args, manifest)...).must(t, 121)
	for _, want := range []string{"kubelet=1.35.7-ubuntu24.04u1", "amd64", "/opt/kubelet/downloads"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	if exists(filepath.Join(root, "opt/bin/kubelet")) {
		t.Error("a target appeared after a failed boot")
	}
}

func TestBakeIgnoresLyingAndForeignPackages(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
`)
	// Named as if it were the wanted package, but it holds 1.34.1; and the
	// right version for the wrong arch.
	cache(t, root, "kubelet", pkg(t, platform.Deb, "kubelet", "1.34.1-ubuntu24.04u1", platform.AMD64), "kubelet_1.34.10-ubuntu24.04u1_amd64.deb")
	cache(t, root, "kubelet", pkg(t, platform.Deb, "kubelet", "1.34.10-ubuntu24.04u1", platform.ARM64), "")
	cache(t, root, "kubectl", pkg(t, platform.Deb, "kubectl", "1.34.10-ubuntu24.04u1", platform.AMD64), "")
	// --offline: bake would otherwise fetch the package the cache lacks.
	r := run(t, nil, "--mode=bake", "--offline", "--root", root, "--arch", "amd64", manifest).must(t, ExitFailure)
	for _, want := range []string{
		"no package kubelet=1.34.10-ubuntu24.04u1 (amd64) in /opt/kubelet/downloads, and --offline forbids fetching it",
		"it holds kubelet=1.34.1-ubuntu24.04u1 (amd64)",
		"it holds kubelet=1.34.10-ubuntu24.04u1 (arm64)",
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("output lacks %q:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
	if exists(filepath.Join(root, "opt/bin")) {
		t.Error("a failed bake plan still wrote /opt/bin")
	}
	// With the real package added, bake takes it and only it.
	cache(t, root, "kubelet", pkg(t, platform.Deb, "kubelet", "1.34.10-ubuntu24.04u1", platform.AMD64), "zz-real.deb")
	run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
	if out := runBinary(t, filepath.Join(root, "opt/bin/kubelet-1.34.10")); out != "Kubernetes v1.34.10\n" {
		t.Errorf("baked kubelet reports %q", out)
	}
	rec := loadRec(t, root)
	if src := rec.Files["/opt/bin/kubelet-1.34.10"].Source.File; src != "/opt/kubelet/downloads/zz-real.deb" {
		t.Errorf("record says the binary came from %q", src)
	}
}

// TestEmbeddedManifestBakesAnImage bakes every ubuntu-24.04 amd64 entry of
// the embedded manifest from real packages, then verifies the image.
func TestEmbeddedManifestBakesAnImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ten packages")
	}
	root := newRoot(t, "ubuntu-24.04")
	r := run(t, nil, "--dry-run", "--output", "json", "--root", root, "--arch", "amd64").must(t, ExitOK)
	var p struct {
		Actions []struct {
			Tool           string `json:"tool"`
			PackageVersion string `json:"package_version"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(manifests.Name, manifests.Components)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := platform.ParseDistro("ubuntu-24.04")
	want := len(m.Entries(d, platform.AMD64))
	if len(p.Actions) != want || want < 10 {
		t.Fatalf("embedded manifest plans %d extractions for ubuntu-24.04 amd64, want one per entry (%d)", len(p.Actions), want)
	}
	for _, a := range p.Actions {
		cache(t, root, a.Tool, pkg(t, platform.Deb, a.Tool, a.PackageVersion, platform.AMD64), "")
	}
	run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64").must(t, ExitOK)
	r = run(t, nil, "--mode=verify", "--exec", "--root", root, "--arch", "amd64").must(t, ExitOK)
	if !strings.Contains(r.stdout, fmt.Sprintf("all %d binaries match", want)) {
		t.Errorf("verify:\n%s", r.stdout)
	}
	run(t, map[string]string{"KUBERNETES_VERSION": "1.36.3"}, "--mode=boot", "--root", root, "--arch", "amd64").must(t, ExitOK)
	if out := runBinary(t, filepath.Join(root, "var/lib/kubelet/credential-provider/acr-credential-provider")); out != "Kubernetes v1.36.5\n" {
		t.Errorf("credential provider reports %q", out)
	}
}

func runBinary(t testing.TB, p string) string {
	t.Helper()
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("running %s: %v", p, err)
	}
	return string(out)
}

// aptRepo builds a local apt repository of debs and returns the --pm-arg
// flags that point reconcile's apt-get at it alone.
func aptRepo(t testing.TB, debs ...string) []string {
	t.Helper()
	pkgbuild.Require(t, "dpkg-scanpackages", "apt-get")
	return pmFlags(t)(pkgbuild.AptRepo(t.TempDir(), debs...))
}

func emptyAptRepo(t testing.TB) []string { return aptRepo(t) }

// dnfRepo is aptRepo for rpms and dnf.
func dnfRepo(t testing.TB, rpms ...string) []string {
	t.Helper()
	pkgbuild.Require(t, "createrepo_c", "dnf")
	return pmFlags(t)(pkgbuild.DnfRepo(t.TempDir(), rpms...))
}

// pmFlags turns package-manager options into reconcile's --pm-arg flags.
func pmFlags(t testing.TB) func([]string, error) []string {
	return func(opts []string, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		flags := make([]string, len(opts))
		for i, o := range opts {
			flags[i] = "--pm-arg=" + o
		}
		return flags
	}
}

// TestAzureLinux runs the rpm side end to end: bake from cached rpms (one
// with an epoch), boot from them, and boot on an empty root fetching the
// exact version and arch with dnf.
func TestAzureLinux(t *testing.T) {
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: azurelinux-3.0, packageVersion: "1.35.7-2.azl3"}
  - {tool: kubectl, distro: azurelinux-3.0, packageVersion: "1:1.35.7-1.azl3"}
  - {tool: kubelet, distro: azurelinux-3.0, packageVersion: "1.35.70-1.azl3"}
  - {tool: kubectl, distro: azurelinux-3.0, packageVersion: "1.35.70-1.azl3"}
`)
	kubelet := pkg(t, platform.RPM, "kubelet", "1.35.7-2.azl3", platform.AMD64)
	kubectl := pkg(t, platform.RPM, "kubectl", "1:1.35.7-1.azl3", platform.AMD64)
	t.Run("bake and boot from the cache", func(t *testing.T) {
		root := newRoot(t, "azurelinux-3.0")
		cache(t, root, "kubelet", kubelet, "")
		cache(t, root, "kubectl", kubectl, "")
		// The decoy: the right name and version for the other arch.
		cache(t, root, "kubelet", pkg(t, platform.RPM, "kubelet", "1.35.7-2.azl3", platform.ARM64), "")
		r := run(t, nil, "--dry-run", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		if !strings.Contains(r.stdout, "it holds kubelet=1.35.7-2.azl3 (arm64)") {
			t.Errorf("plan does not say why the aarch64 rpm is ignored:\n%s", r.stdout)
		}
		cache(t, root, "kubelet", pkg(t, platform.RPM, "kubelet", "1.35.70-1.azl3", platform.AMD64), "")
		cache(t, root, "kubectl", pkg(t, platform.RPM, "kubectl", "1.35.70-1.azl3", platform.AMD64), "")
		run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		run(t, nil, "--mode=verify", "--exec", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		run(t, nil, "--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		if out := runBinary(t, filepath.Join(root, "opt/bin/kubectl")); out != "Kubernetes v1.35.7\n" {
			t.Errorf("kubectl reports %q", out)
		}
	})
	t.Run("fetch with dnf", func(t *testing.T) {
		repo := dnfRepo(t, kubelet, kubectl,
			pkg(t, platform.RPM, "kubelet", "1.35.7-2.azl3", platform.ARM64),
			pkg(t, platform.RPM, "kubelet", "1.35.70-1.azl3", platform.AMD64),
			pkg(t, platform.RPM, "kubectl", "1.35.70-1.azl3", platform.AMD64))
		root := newRoot(t, "azurelinux-3.0")
		args := append([]string{"--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64"}, repo...)
		r := run(t, nil, append(args, manifest)...).must(t, ExitOK)
		if !strings.Contains(r.stdout, "+ fetch kubectl=1:1.35.7-1.azl3 (amd64) with dnf into /opt/kubectl/downloads") {
			t.Errorf("boot output:\n%s", r.stdout)
		}
		for _, tool := range []string{"kubelet", "kubectl"} {
			if out := runBinary(t, filepath.Join(root, "opt/bin", tool)); out != "Kubernetes v1.35.7\n" {
				t.Errorf("%s reports %q", tool, out)
			}
		}
		if m := elfMachine(t, filepath.Join(root, "opt/bin/kubelet")); m != "EM_X86_64" {
			t.Errorf("kubelet is %s", m)
		}
	})
}

// TestBootFetchesExactVersionWithApt is the package-manager step: nothing
// cached, nothing baked; apt-get must fetch exactly 1.34.1 for amd64 from a
// repository that also offers 1.34.10, 1.34.11, 1.34.10~rc.1 and arm64.
func TestBootFetchesExactVersionWithApt(t *testing.T) {
	var debs []string
	for _, tool := range []string{"kubelet", "kubectl"} {
		for _, v := range []string{"1.34.1-1.1", "1.34.10-1.1", "1.34.10~rc.1-1.1", "1.34.11-1.1"} {
			for _, arch := range []platform.Arch{platform.AMD64, platform.ARM64} {
				debs = append(debs, pkg(t, platform.Deb, tool, v, arch))
			}
		}
	}
	repo := aptRepo(t, debs...)
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: debian-12, packageVersion: "1.34.1-1.1"}
  - {tool: kubectl, distro: debian-12, packageVersion: "1.34.1-1.1"}
  - {tool: kubelet, distro: debian-12, packageVersion: "1.34.10-1.1"}
  - {tool: kubectl, distro: debian-12, packageVersion: "1.34.10-1.1"}
`)
	for _, tc := range []struct{ k8s, arch, want string }{
		{"1.34.1", "amd64", "Kubernetes v1.34.1\n"},
		{"1.34.10", "amd64", "Kubernetes v1.34.10\n"},
		{"1.34.10", "arm64", ""},
	} {
		t.Run(tc.k8s+"-"+tc.arch, func(t *testing.T) {
			root := newRoot(t, "debian-12")
			args := append([]string{"--mode=boot", "--k8s-version", tc.k8s, "--root", root, "--arch", tc.arch}, repo...)
			r := run(t, nil, append(args, manifest)...).must(t, ExitOK)
			if !strings.Contains(r.stdout, "+ fetch kubelet="+tc.k8s+"-1.1 ("+tc.arch+") with apt-get into /opt/kubelet/downloads") {
				t.Errorf("boot output:\n%s", r.stdout)
			}
			target := filepath.Join(root, "opt/bin/kubelet")
			if tc.want != "" {
				if out := runBinary(t, target); out != tc.want {
					t.Errorf("fetched kubelet reports %q, want %q", out, tc.want)
				}
			} else if m := elfMachine(t, target); m != "EM_AARCH64" {
				t.Errorf("fetched an %s kubelet for arm64", m)
			}
			rec := loadRec(t, root)
			if got := rec.Files["/opt/bin/kubelet"].Source.Version; got != tc.k8s+"-1.1" {
				t.Errorf("record: kubelet from package version %q", got)
			}
			if exists(filepath.Join(root, "opt/kubelet/downloads")) {
				t.Error("the fetched package stayed in the cache")
			}
			if got := planOps(t, append(args[1:], "--mode=boot", manifest)...); len(got) != 0 {
				t.Errorf("boot again plans %q", got)
			}
		})
	}
	t.Run("not offered", func(t *testing.T) {
		root := newRoot(t, "debian-12")
		other := writeManifest(t, `components:
  - {tool: kubelet, distro: debian-12, packageVersion: "1.34.2-1.1"}
  - {tool: kubectl, distro: debian-12, packageVersion: "1.34.2-1.1"}
`)
		args := append([]string{"--mode=boot", "--k8s-version", "1.34.2", "--root", root, "--arch", "amd64"}, repo...)
		r := run(t, nil, append(args, other)...).must(t, 121)
		for _, want := range []string{"1.34.2-1.1", "1.34.1-1.1", "1.34.10-1.1", "1.34.11-1.1"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("error lacks %q:\n%s", want, r.stderr)
			}
		}
	})
}

func elfMachine(t testing.TB, p string) string {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Machine.String()
}

func TestBootEventsAndDependencyWarnings(t *testing.T) {
	root, manifest := bakedRoot(t)
	// The node has iptables but not conntrack, which the packages need.
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), `Package: iptables
Status: install ok installed
Version: 1.8.9-2

Package: conntrack
Status: deinstall ok config-files
Version: 1:1.4.7-1
`)
	args := []string{"--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", manifest}

	before := snapshot(t, root)
	r := run(t, nil, append([]string{"--require-deps"}, args...)...).must(t, 121)
	if !strings.Contains(r.stdout+r.stderr, "kubelet 1.35.7-ubuntu24.04u1 depends on conntrack, which this node lacks") {
		t.Errorf("--require-deps output:\n%s\n%s", r.stdout, r.stderr)
	}
	if after := snapshot(t, root); !slices.Equal(before, after) {
		t.Errorf("a refused boot changed the disk:\n%v\n%v", before, after)
	}

	r = run(t, nil, append([]string{"--events-dir", "/var/log/reconcile/events"}, args...)...).must(t, ExitOK)
	if !strings.Contains(r.stdout, "warning: kubectl 1.35.7-ubuntu24.04u1 depends on conntrack") {
		t.Errorf("boot output lacks the dependency warning:\n%s", r.stdout)
	}
	dir := filepath.Join(root, "var/log/reconcile/events")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tasks := map[string]map[string]string{}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") {
			t.Errorf("event file %s", f.Name())
		}
		var ev map[string]string
		if err := json.Unmarshal(fileContent(t, filepath.Join(dir, f.Name())), &ev); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		for _, k := range []string{"Timestamp", "OperationId", "Version", "TaskName", "EventLevel", "Message", "EventPid", "EventTid"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("%s lacks %s", f.Name(), k)
			}
		}
		if _, err := time.Parse("2006-01-02 15:04:05.000", ev["Timestamp"]); err != nil {
			t.Errorf("Timestamp %q: %v", ev["Timestamp"], err)
		}
		tasks[ev["TaskName"]] = ev
	}
	// 2 installs, 2 removes of 1.34.10, 2 cache removals, and the run.
	if len(files) != 7 {
		t.Errorf("%d event files, want 7: %v", len(files), tasks)
	}
	for _, task := range []string{"reconcile.boot", "reconcile.boot.install.kubelet", "reconcile.boot.install.kubectl", "reconcile.boot.remove_cache.kubelet"} {
		ev, ok := tasks[task]
		if !ok {
			t.Errorf("no event %s", task)
			continue
		}
		if ev["EventLevel"] != "Informational" || ev["Version"] != "1.23" || ev["EventPid"] != "0" {
			t.Errorf("%s: %v", task, ev)
		}
	}
	if msg := tasks["reconcile.boot"]["Message"]; !strings.Contains(msg, "conntrack") {
		t.Errorf("run event does not carry the dependency warning: %q", msg)
	}
}

func TestFailedBootWritesAnErrorEvent(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions)
	r := run(t, nil, "--mode=boot", "--require-manifest-version", "--k8s-version", "1.99.0", "--events-dir", "/events", "--root", root, "--arch", "amd64", manifest).must(t, 121)
	if !strings.Contains(r.stderr, "no kubelet entry for ubuntu-24.04 amd64 serves Kubernetes 1.99.0; the manifest's entries serve 1.34.10, 1.35.7") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	files, _ := os.ReadDir(filepath.Join(root, "events"))
	if len(files) != 1 {
		t.Fatalf("%d events, want the run's one", len(files))
	}
	var ev map[string]string
	json.Unmarshal(fileContent(t, filepath.Join(root, "events", files[0].Name())), &ev)
	if ev["EventLevel"] != "Error" || ev["TaskName"] != "reconcile.boot" || !strings.Contains(ev["Message"], "1.99.0") {
		t.Errorf("event: %v", ev)
	}
}

// snapshot lists every path under root with its size and mode.
func snapshot(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%s %d %s %d", rel, fi.Size(), fi.Mode(), fi.ModTime().UnixNano()))
		return nil
	})
	return out
}

func TestBadInputExitsTwo(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no mode", nil, []string{"--root", root}, "--mode is required"},
		{"unknown mode", nil, []string{"--mode=install"}, `--mode "install": expected bake, boot or verify`},
		{"unknown flag", nil, []string{"--mode=bake", "--force"}, "unknown flag --force"},
		{"two manifests", nil, []string{"--dry-run", manifest, manifest}, "at most one MANIFEST argument"},
		{"bad output", nil, []string{"--dry-run", "--output", "yaml"}, `--output "yaml": expected text or json`},
		{"detailed exit code without dry-run", nil, []string{"--mode=bake", "--detailed-exitcode"}, "--detailed-exitcode goes with --dry-run"},
		{"bad arch", nil, []string{"--dry-run", "--root", root, "--arch", "riscv64", manifest}, `--arch "riscv64": expected amd64 or arm64`},
		{"unknown distro", nil, []string{"--dry-run", "--distro", "gentoo-2.17", manifest}, `unknown distro id "gentoo"`},
		{"boot without a version", nil, []string{"--mode=boot", "--root", root, manifest}, "boot needs the cluster version"},
		{"bad cluster version", map[string]string{"KUBERNETES_VERSION": "1.35"}, []string{"--mode=boot", "--root", root, manifest}, `"1.35" is a minor line`},
		{"bad enforce variable", map[string]string{"SHOULD_ENFORCE_KUBE_PMC_INSTALL": "yes"}, []string{"--mode=boot"}, `SHOULD_ENFORCE_KUBE_PMC_INSTALL="yes": expected true or false`},
		{"missing manifest", nil, []string{"--dry-run", "--root", root, "/no/such.yaml"}, "/no/such.yaml"},
		{"missing root", nil, []string{"--dry-run", "--root", "/no/such/root", manifest}, "--root /no/such/root"},
		{"distro not in the manifest", nil, []string{"--mode=bake", "--root", root, "--distro", "debian-12", manifest}, "has no entries for debian-12 amd64 (it lists ubuntu-24.04)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, root)
			r := run(t, tc.env, tc.args...).must(t, ExitBadInput)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
			if after := snapshot(t, root); !slices.Equal(before, after) {
				t.Error("bad input changed the disk")
			}
		})
	}
}

func TestFlagsMayFollowTheManifest(t *testing.T) {
	manifest := writeManifest(t, twoVersions)
	r := run(t, nil, manifest, "--dry-run", "--distro", "ubuntu-24.04", "--arch", "arm64").must(t, ExitOK)
	if !strings.Contains(r.stdout, "bake plan for ubuntu-24.04 arm64") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestDryRunDetailedExitCode(t *testing.T) {
	root, manifest := bakedRoot(t)
	args := []string{"--dry-run", "--detailed-exitcode", "--root", root, "--arch", "amd64", manifest}
	run(t, nil, args...).must(t, ExitOK)
	run(t, nil, append(args, "--mode=boot", "--k8s-version", "1.34.10")...).must(t, ExitChanges)
}

func TestHelpAndVersion(t *testing.T) {
	r := run(t, nil, "--help").must(t, ExitOK)
	for _, want := range []string{"SYNOPSIS", "EXIT CODES", "121", "KUBERNETES_VERSION", "SHOULD_ENFORCE_KUBE_PMC_INSTALL", "/var/lib/reconcile/state.json", "EXAMPLES"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if r := run(t, nil, "--version").must(t, ExitOK); !strings.HasPrefix(r.stdout, "reconcile ") {
		t.Errorf("--version printed %q", r.stdout)
	}
}

// TestJSONOutputIsOneDocument: whatever happens, --output json prints
// exactly one JSON document on stdout.
func TestJSONOutputIsOneDocument(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions)
	for name, tc := range map[string]struct {
		args []string
		code int
	}{
		"bad manifest":    {[]string{"--mode=bake", "--root", root, "/no/such.yaml"}, ExitBadInput},
		"plan with holes": {[]string{"--mode=bake", "--root", root, manifest}, ExitFailure},
		"boot unserved":   {[]string{"--mode=boot", "--k8s-version", "1.99.0", "--root", root, manifest}, 121},
		"dry run":         {[]string{"--dry-run", "--root", root, manifest}, ExitOK},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, nil, append([]string{"--output", "json", "--arch", "amd64"}, tc.args...)...).must(t, tc.code)
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
			}
			if dec.More() {
				t.Errorf("more than one JSON document:\n%s", r.stdout)
			}
		})
	}
}

// TestCacheRemovalIsNeverRecursive: a cacheDir of /opt by mistake must not
// take /opt/bin (or anything but the packages) with it at boot.
func TestCacheRemovalIsNeverRecursive(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `tools:
  kubelet: {cacheDir: /opt}
  kubectl: {cacheDir: /opt}
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
`)
	for _, tool := range []string{"kubelet", "kubectl"} {
		data := fileContent(t, pkg(t, platform.Deb, tool, "1.35.7-ubuntu24.04u1", platform.AMD64))
		writeFile(t, filepath.Join(root, "opt", tool+".deb"), string(data))
	}
	writeFile(t, filepath.Join(root, "opt/containerd/config.toml"), "keep me")
	args := []string{"--root", root, "--arch", "amd64", manifest}
	run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)
	run(t, nil, append([]string{"--mode=boot", "--k8s-version", "1.35.7"}, args...)...).must(t, ExitOK)
	for _, keep := range []string{"opt/bin/kubelet", "opt/bin/kubectl", "opt/containerd/config.toml"} {
		if !exists(filepath.Join(root, keep)) {
			t.Errorf("boot removed %s", keep)
		}
	}
	for _, gone := range []string{"opt/kubelet.deb", "opt/kubectl.deb"} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("boot left the package %s", gone)
		}
	}
	if ops := planOps(t, append([]string{"--mode=boot", "--k8s-version", "1.35.7"}, args...)...); len(ops) != 0 {
		t.Errorf("second boot plans %v", ops)
	}
}

func TestVerifyFindsWhatIsWrong(t *testing.T) {
	root, manifest := bakedRoot(t)
	args := []string{"--mode=verify", "--root", root, "--arch", "amd64", manifest}
	// Same size, other bytes: the cheap identity of boot would not see it,
	// verify's digest does.
	p := filepath.Join(root, "opt/bin/kubectl-1.34.10")
	data := fileContent(t, p)
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "opt/bin/kubelet-1.35.7"))
	r := run(t, nil, args...).must(t, ExitVerify)
	for _, want := range []string{
		"FAIL /opt/bin/kubectl-1.34.10 (kubectl 1.34.10-ubuntu24.04u1): sha256",
		"FAIL /opt/bin/kubelet-1.35.7 (kubelet 1.35.7-ubuntu24.04u1): missing",
		"ok   /opt/bin/kubelet-1.34.10",
		"2 of 4 binaries differ",
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("verify output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

func TestVerifyChecksTheELFMachine(t *testing.T) {
	pkgbuild.RequireFormat(t, platform.Deb)
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [arm64]}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [arm64]}
`)
	// An arm64 package that carries an x86-64 kubelet.
	amd, err := pkgbuild.Binary(platform.AMD64, "1.35.7")
	if err != nil {
		t.Fatal(err)
	}
	arm, err := pkgbuild.Binary(platform.ARM64, "1.35.7")
	if err != nil {
		t.Fatal(err)
	}
	for tool, bin := range map[string][]byte{"kubelet": amd, "kubectl": arm} {
		deb, err := pkgbuild.Deb(t.TempDir(), pkgbuild.Spec{Name: tool, Version: "1.35.7-ubuntu24.04u1", Arch: platform.ARM64, Files: map[string][]byte{"usr/bin/" + tool: bin}})
		if err != nil {
			t.Fatal(err)
		}
		cache(t, root, tool, deb, "")
	}
	// Bake refuses the kubelet, naming the file, the package and both
	// arches, and installs and records nothing of it.
	b := run(t, nil, "--mode=bake", "--root", root, "--arch", "arm64", manifest).must(t, ExitFailure)
	if !strings.Contains(b.stderr, "./usr/bin/kubelet in /opt/kubelet/downloads/kubelet_1.35.7-ubuntu24.04u1_arm64.deb (kubelet=1.35.7-ubuntu24.04u1, labelled arm64) is built for amd64") ||
		!strings.Contains(b.stderr, "not for the entry's arm64") {
		t.Errorf("bake:\n%s", b.stderr)
	}
	if exists(filepath.Join(root, "opt/bin/kubelet-1.35.7")) {
		t.Error("the amd64 kubelet was installed as arm64")
	}
	if _, ok := loadRec(t, root).Files["/opt/bin/kubelet-1.35.7"]; ok {
		t.Error("the refused kubelet is in the record")
	}
	r := run(t, nil, "--mode=verify", "--root", root, "--arch", "arm64", manifest).must(t, ExitVerify)
	if !strings.Contains(r.stdout, "FAIL /opt/bin/kubelet-1.35.7") || !strings.Contains(r.stdout, "ok   /opt/bin/kubectl-1.35.7") {
		t.Errorf("verify:\n%s", r.stdout)
	}
	// Verify reads the machine too: an amd64 binary planted in the place
	// of the recorded arm64 kubectl fails it.
	if err := os.WriteFile(filepath.Join(root, "opt/bin/kubectl-1.35.7"), amd, 0o755); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "--mode=verify", "--root", root, "--arch", "arm64", manifest).must(t, ExitVerify)
	if !strings.Contains(r.stdout, "ELF machine EM_X86_64, want EM_AARCH64 for arm64") {
		t.Errorf("verify:\n%s", r.stdout)
	}
}
