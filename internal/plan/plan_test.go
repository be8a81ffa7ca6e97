package plan_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/state"
	"github.com/nodeimage/reconcile/internal/view"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const components = `tools:
  azure-acr-credential-provider:
    target: /var/lib/kubelet/credential-provider/acr-credential-provider
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.34.13-ubuntu24.04u1", k8sVersion: "1.34"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.35.8-ubuntu24.04u1", k8sVersion: "1.35"}
`

// manyLines has runc and containerd entries that serve many Kubernetes
// lines each, beside kubelet and kubectl entries of two minors.
const manyLines = `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: runc, distro: ubuntu-24.04, packageVersion: "1.4.3-ubuntu24.04u2", k8sVersion: "*"}
  - {tool: containerd, distro: ubuntu-24.04, packageVersion: "2.3.3-ubuntu24.04u2", k8sVersion: ">= 1.33, < 1.37"}
`

var (
	ubuntu = platform.Distro{ID: "ubuntu", VersionID: "24.04"}
	mtime  = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
)

func deb(v string) pkgversion.Version { return pkgversion.MustParse(platform.Deb, v) }

// disk builds an observed state in a few words.
type disk struct{ st *state.State }

func newDisk() *disk {
	return &disk{&state.State{Files: map[string]state.File{}, Versioned: map[string][]string{}, Cache: map[string][]state.Package{},
		Record: state.Record{Format: state.RecordFormat, Files: map[string]state.Binary{}},
		Deps:   state.Deps{Checked: true, Missing: map[string]bool{}}}}
}

// baked adds a versioned binary (or a target) that matches the record.
func (d *disk) baked(tool, version, path string) *disk {
	d.st.Files[path] = state.File{Regular: true, Size: 1000, ModTime: mtime, Mode: 0o755}
	d.st.Record.Files[path] = state.Binary{Tool: tool, PackageVersion: version, Arch: "amd64", Size: 1000, ModTime: mtime,
		SHA256: "ab", Depends: []string{"iptables", "conntrack"}, Source: state.Source{Name: tool}}
	if strings.HasPrefix(path, "/opt/bin/"+tool+"-") {
		d.st.Versioned[tool] = append(d.st.Versioned[tool], path)
	}
	return d
}

func (d *disk) cached(tool, version string, arch platform.Arch, file string) *disk {
	dir := "/opt/" + tool + "/downloads"
	d.st.Cache[dir] = append(d.st.Cache[dir], state.Package{File: dir + "/" + file, Name: tool, Version: deb(version), Arch: arch,
		Depends: []string{"iptables", "conntrack"}})
	return d
}

func bakedImage() *disk {
	d := newDisk()
	for _, v := range []string{"1.34.10", "1.35.7"} {
		d.baked("kubelet", v+"-ubuntu24.04u1", "/opt/bin/kubelet-"+v).baked("kubectl", v+"-ubuntu24.04u1", "/opt/bin/kubectl-"+v)
	}
	d.baked("azure-acr-credential-provider", "1.34.13-ubuntu24.04u1", "/opt/bin/azure-acr-credential-provider-1.34.13")
	d.baked("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", "/opt/bin/azure-acr-credential-provider-1.35.8")
	// Bake leaves the packages it extracted in the caches.
	for _, v := range []string{"1.34.10", "1.35.7"} {
		d.cached("kubelet", v+"-ubuntu24.04u1", platform.AMD64, "kubelet_"+v+".deb").cached("kubectl", v+"-ubuntu24.04u1", platform.AMD64, "kubectl_"+v+".deb")
	}
	return d.cached("azure-acr-credential-provider", "1.34.13-ubuntu24.04u1", platform.AMD64, "acr_1.34.13.deb").
		cached("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", platform.AMD64, "acr_1.35.8.deb")
}

func TestCompute(t *testing.T) {
	m, err := manifest.Parse("components.yaml", []byte(components))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := manifest.Parse("many-lines.yaml", []byte(manyLines))
	if err != nil {
		t.Fatal(err)
	}
	k8s := func(s string) *semver.Version { return semver.MustParse(s) }
	boot := func(v string) plan.Request {
		return plan.Request{Mode: plan.Boot, Distro: ubuntu, Arch: platform.AMD64, K8sVersion: k8s(v), Manager: "apt-get"}
	}
	bake := plan.Request{Mode: plan.Bake, Distro: ubuntu, Arch: platform.AMD64, Manager: "apt-get"}
	offline := func(r *plan.Request, _ *state.State) { r.Offline = true }
	tests := []struct {
		name     string
		manifest *manifest.Manifest // default: components
		disk     *disk
		req      plan.Request
		edit     func(*plan.Request, *state.State)
		empty    bool // the plan must have no actions
	}{
		{name: "bake-fetch", disk: newDisk().cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "e.deb"), req: bake},
		{name: "bake-offline", disk: newDisk().cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "e.deb"), req: bake, edit: offline},
		{name: "bake-no-package-manager", disk: newDisk(), req: bake, edit: func(r *plan.Request, _ *state.State) {
			r.Manager, r.NoManager = "", "no package manager for rpm packages: neither dnf nor tdnf is in PATH (/usr/bin)"
		}},
		{name: "bake-from-cache", req: bake, disk: newDisk().
			cached("kubelet", "1.34.10-ubuntu24.04u1", platform.AMD64, "a.deb").
			cached("kubelet", "1.34.1-ubuntu24.04u1", platform.AMD64, "kubelet_1.34.10-ubuntu24.04u1_amd64.deb").
			cached("kubelet", "1.35.7-ubuntu24.04u1", platform.ARM64, "b.deb").
			cached("kubelet", "1.35.7-ubuntu24.04u1", platform.Any, "c.deb").
			cached("kubectl", "1.34.10-ubuntu24.04u1", platform.AMD64, "d.deb").
			cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "e.deb").
			cached("azure-acr-credential-provider", "1.34.13-ubuntu24.04u1", platform.AMD64, "f.deb").
			cached("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", platform.AMD64, "g.deb")},
		{name: "bake-converged", req: bake, disk: bakedImage(), empty: true},
		{name: "bake-tampered-and-interrupted", req: bake, disk: bakedImage().cached("kubelet", "1.35.7-ubuntu24.04u1", platform.AMD64, "k.deb"),
			edit: func(_ *plan.Request, st *state.State) {
				st.Files["/opt/bin/kubelet-1.35.7"] = state.File{Regular: true, Size: 999, ModTime: mtime}
				st.Temps = []string{"/opt/bin/.reconcile-tmp-kubelet-1.35.7-0a1b2c"}
			}},
		{name: "boot-versioned", req: boot("1.35.7"), disk: bakedImage()},
		{name: "boot-minor-line", req: boot("1.35.99"), disk: bakedImage()},
		{name: "boot-enforced", req: boot("1.35.7"), disk: bakedImage().
			cached("kubelet", "1.35.7-ubuntu24.04u1", platform.AMD64, "k.deb").
			cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "c.deb").
			cached("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", platform.AMD64, "a.deb"),
			edit: func(r *plan.Request, _ *state.State) { r.EnforcePackage = true }},
		{name: "boot-nothing-there", req: boot("1.34.10"), disk: newDisk()},
		{name: "boot-converged", req: boot("1.35.7"), disk: newDisk().
			baked("kubelet", "1.35.7-ubuntu24.04u1", "/opt/bin/kubelet").
			baked("kubectl", "1.35.7-ubuntu24.04u1", "/opt/bin/kubectl").
			baked("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", "/var/lib/kubelet/credential-provider/acr-credential-provider"),
			empty: true},
		{name: "boot-other-version-at-target", req: boot("1.35.7"), disk: bakedImage().
			baked("kubelet", "1.34.10-ubuntu24.04u1", "/opt/bin/kubelet")},
		{name: "boot-missing-deps", req: boot("1.35.7"), disk: bakedImage(),
			edit: func(_ *plan.Request, st *state.State) {
				st.Deps = state.Deps{Checked: true, Missing: map[string]bool{"conntrack": true}}
			}},
		{name: "boot-require-deps", req: boot("1.35.7"), disk: bakedImage(),
			edit: func(r *plan.Request, st *state.State) {
				r.RequireDeps = true
				st.Deps = state.Deps{Checked: true, Missing: map[string]bool{"conntrack": true}}
			}},
		{name: "boot-deps-unchecked", req: boot("1.35.7"), disk: bakedImage(),
			edit: func(_ *plan.Request, st *state.State) {
				st.Deps = state.Deps{Why: "no /var/lib/dpkg/status on this node"}
			}},
		// Killed between the rename of kubelet and the record write that
		// forgets its versioned name: the plan forgets it, apply writes that.
		{name: "boot-killed-after-rename", req: boot("1.35.7"), disk: bakedImage().
			baked("kubelet", "1.35.7-ubuntu24.04u1", "/opt/bin/kubelet"),
			edit: func(_ *plan.Request, st *state.State) {
				delete(st.Files, "/opt/bin/kubelet-1.35.7")
				st.Versioned["kubelet"] = []string{"/opt/bin/kubelet-1.34.10"}
			}},
		// No entry names 1.36.0: kubelet and kubectl are fetched, but the
		// credential provider's entries are minor lines, and none is 1.36.
		{name: "boot-unserved-version", req: boot("1.36.0"), disk: bakedImage()},
		// 1.35.9: kubelet from the newest cached revision for amd64 (not the
		// arm64 one, not 1.35.90), kubectl from its recorded versioned
		// binary; the credential provider by its 1.35 line.
		{name: "boot-unlisted-version-cached", req: boot("1.35.9"), disk: bakedImage().
			cached("kubelet", "1.35.9-ubuntu24.04u1", platform.AMD64, "k1.deb").
			cached("kubelet", "1.35.9-ubuntu24.04u2", platform.AMD64, "k2.deb").
			cached("kubelet", "1.35.9-ubuntu24.04u3", platform.ARM64, "k3.deb").
			cached("kubelet", "1.35.90-ubuntu24.04u9", platform.AMD64, "k4.deb").
			baked("kubectl", "1.35.9-ubuntu24.04u5", "/opt/bin/kubectl-1.35.9")},
		{name: "boot-unlisted-version-fetch", req: boot("1.35.9"), disk: bakedImage()},
		// Enforced: kubectl's recorded versioned binary is passed over for
		// the repository.
		{name: "boot-unlisted-version-enforced", req: boot("1.35.9"), disk: bakedImage().
			cached("kubelet", "1.35.9-ubuntu24.04u1", platform.AMD64, "k1.deb").
			baked("kubectl", "1.35.9-ubuntu24.04u5", "/opt/bin/kubectl-1.35.9"),
			edit: func(r *plan.Request, _ *state.State) { r.EnforcePackage = true }},
		{name: "boot-unlisted-version-converged", req: boot("1.35.9"), empty: true, disk: newDisk().
			baked("kubelet", "1.35.9-ubuntu24.04u2", "/opt/bin/kubelet").
			baked("kubectl", "1.35.9-ubuntu24.04u5", "/opt/bin/kubectl").
			baked("azure-acr-credential-provider", "1.35.8-ubuntu24.04u1", "/var/lib/kubelet/credential-provider/acr-credential-provider")},
		{name: "boot-require-manifest-version", req: boot("1.35.9"), disk: bakedImage(),
			edit: func(r *plan.Request, _ *state.State) { r.RequireManifestVersion = true }},
		{name: "boot-offline", req: boot("1.35.9"), disk: newDisk(), edit: offline},
		{name: "boot-constraint-1.34", manifest: lines, req: boot("1.34.10"), disk: newDisk().
			cached("runc", "1.4.3-ubuntu24.04u2", platform.AMD64, "runc.deb").
			cached("containerd", "2.3.3-ubuntu24.04u2", platform.AMD64, "containerd.deb")},
		{name: "boot-constraint-1.35", manifest: lines, req: boot("1.35.7"), disk: newDisk().
			cached("runc", "1.4.3-ubuntu24.04u2", platform.AMD64, "runc.deb").
			cached("containerd", "2.3.3-ubuntu24.04u2", platform.AMD64, "containerd.deb")},
		{name: "boot-constraint-outside", manifest: lines, req: boot("1.37.1"), disk: newDisk()},
		{name: "other-distro", req: plan.Request{Mode: plan.Bake, Distro: platform.Distro{ID: "debian", VersionID: "12"}, Arch: platform.AMD64},
			disk: newDisk(), empty: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if tc.edit != nil {
				tc.edit(&req, tc.disk.st)
			}
			mf := m
			if tc.manifest != nil {
				mf = tc.manifest
			}
			p, err := plan.Compute(mf, tc.disk.st, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.empty != (len(p.Actions) == 0) {
				t.Errorf("%d actions, want empty=%v", len(p.Actions), tc.empty)
			}
			var text, js bytes.Buffer
			if err := view.PlanText(&text, p, mf.Distros()); err != nil {
				t.Fatal(err)
			}
			if err := view.PlanJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".txt", text.Bytes())
			golden(t, tc.name+".json", js.Bytes())
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestVerifyHasNoPlan(t *testing.T) {
	m, _ := manifest.Parse("c.yaml", []byte(components))
	if _, err := plan.Compute(m, newDisk().st, plan.Request{Mode: plan.Verify, Distro: ubuntu, Arch: platform.AMD64}); err == nil {
		t.Fatal("verify planned")
	}
}

func TestBootWithoutClusterVersion(t *testing.T) {
	m, _ := manifest.Parse("c.yaml", []byte(components))
	if _, err := plan.Compute(m, newDisk().st, plan.Request{Mode: plan.Boot, Distro: ubuntu, Arch: platform.AMD64}); err == nil {
		t.Fatal("boot without a cluster version planned")
	}
}

func TestExitCodeIsTheFirstFailingTool(t *testing.T) {
	m, _ := manifest.Parse("c.yaml", []byte(components))
	p, err := plan.Compute(m, newDisk().st, plan.Request{Mode: plan.Boot, Distro: ubuntu, Arch: platform.AMD64, K8sVersion: semver.MustParse("1.30.0"), RequireManifestVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	var pe *plan.Error
	if e := p.Err(); e == nil || !asPlanError(e, &pe) || pe.ExitCode() != 121 || len(pe.Items) != 3 {
		t.Fatalf("err %v, want kubelet's 121 first of 3 problems", p.Err())
	}
	for _, it := range pe.Items {
		if it.Code != plan.CodeVersionMissing {
			t.Errorf("%s: code %q, want %q", it.Message, it.Code, plan.CodeVersionMissing)
		}
	}
	if codes := []int{pe.Items[1].ExitCode, pe.Items[2].ExitCode}; !slices.Equal(codes, []int{122, 205}) {
		t.Errorf("kubectl and credential provider codes %v", codes)
	}
}

func asPlanError(err error, target **plan.Error) bool {
	pe, ok := err.(*plan.Error)
	*target = pe
	return ok
}

// TestPlanIsPure keeps planning free of side effects, through every
// dependency: no command, no disk reader or writer, no apply.
func TestPlanIsPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/nodeimage/reconcile/internal/state") {
		t.Fatalf("go list -deps found no internal/state among %d packages: the test checks nothing", len(deps))
	}
	for _, d := range deps {
		if d == "os/exec" {
			t.Errorf("internal/plan depends on os/exec")
		}
		for _, impure := range []string{"apply", "pkgfile", "rootfs", "deps", "pkgmgr", "observe", "source", "verify", "events"} {
			if d == "github.com/nodeimage/reconcile/internal/"+impure {
				t.Errorf("internal/plan depends on %s", d)
			}
		}
	}
}
