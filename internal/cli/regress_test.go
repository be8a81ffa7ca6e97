package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/observe"
	"github.com/nodeimage/reconcile/internal/state"
)

func loadRec(t *testing.T, root string) state.Record {
	t.Helper()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rec, err := observe.LoadRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestClashingPathsAreBadInput: targets that boot would install and then
// destroy (a versioned name, another tool's target, the state record) are
// refused as bad input before anything on disk is touched.
func TestClashingPathsAreBadInput(t *testing.T) {
	for name, tc := range map[string]struct{ tools, want string }{
		"own versioned name":     {"  kubelet: {target: /opt/bin/kubelet-1.35.7}\n", "has the name of a versioned binary of kubelet"},
		"other's versioned name": {"  kubectl: {target: /opt/bin/kubelet-1.34.10}\n", "has the name of a versioned binary of kubelet"},
		"the state record":       {"  kubelet: {target: /var/lib/reconcile/state.json}\n", "where reconcile keeps its state"},
		"a shared target":        {"  kubectl: {target: /opt/bin/kubelet}\n", "is the target of kubelet too"},
	} {
		t.Run(name, func(t *testing.T) {
			root := newRoot(t, "ubuntu-24.04")
			manifest := writeManifest(t, "tools:\n"+tc.tools+twoVersions)
			before := snapshot(t, root)
			for _, mode := range []string{"--mode=bake", "--mode=boot"} {
				r := run(t, nil, mode, "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", manifest).must(t, ExitBadInput)
				if !strings.Contains(r.stderr, tc.want) {
					t.Errorf("%s: stderr lacks %q:\n%s", mode, tc.want, r.stderr)
				}
			}
			if after := snapshot(t, root); !slices.Equal(before, after) {
				t.Error("a refused manifest changed the disk")
			}
		})
	}
}

// The manifest switches kubelet to another package of the same version
// (kubelet → kubelet-fips): bake plans nothing and verify passes, because the
// record's package name is never compared.
func TestPackageChangeNotNoticed(t *testing.T) {
	root, manifest, args := bakedRootWith(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`)
	writeFile(t, manifest, `tools:
  kubelet: {package: kubelet-fips}
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`)
	ops := planOps(t, append([]string{"--mode=bake"}, args...)...)
	r := run(t, nil, append([]string{"--mode=verify"}, args...)...)
	src := loadRec(t, root).Files["/opt/bin/kubelet-1.35.7"].Source.Name
	t.Logf("bake plan %v; verify exit %d; recorded source package %s", ops, r.code, src)
	if len(ops) == 0 && r.code == ExitOK && src != "kubelet-fips" {
		t.Errorf("manifest asks for kubelet-fips, disk holds a binary from %s, and bake/verify say all is well", src)
	}
}

// A directory whose name ends in .deb in the package cache: every boot plans
// remove_cache again (removeCache skips dirs, listCache counts them).
func TestDirNamedDebBreaksIdempotency(t *testing.T) {
	root, _, args := bakedRootWith(t, twoVersions)
	if err := os.MkdirAll(filepath.Join(root, "opt/kubelet/downloads/old.deb"), 0o755); err != nil {
		t.Fatal(err)
	}
	boot := append([]string{"--mode=boot", "--k8s-version", "1.35.7"}, args...)
	run(t, nil, boot...).must(t, ExitOK)
	if ops := planOps(t, boot...); len(ops) != 0 {
		t.Errorf("second boot plans %v, want nothing", ops)
	}
}

// A directory with the temp prefix (non-empty) in /opt/bin: every run plans
// a "remove" that cannot succeed, so bake and boot fail forever.
func TestTempPrefixedDirFailsEveryRun(t *testing.T) {
	root, _, args := bakedRootWith(t, twoVersions)
	writeFile(t, filepath.Join(root, "opt/bin/.reconcile-tmp-x/keep"), "x")
	r := run(t, nil, append([]string{"--mode=bake"}, args...)...)
	if r.code != ExitOK {
		t.Errorf("bake exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// The run succeeded but writing its events failed: exit 0 with an error
// message on stderr (and no error in --output json).
func TestEventsFailureExitsZero(t *testing.T) {
	root, _, args := bakedRootWith(t, twoVersions)
	r := run(t, nil, append([]string{"--mode=bake", "--events-dir", "/etc/os-release"}, args...)...)
	t.Logf("exit %d stderr %q", r.code, r.stderr)
	if r.code == ExitOK && strings.Contains(r.stderr, "reconcile: ") {
		t.Errorf("exit 0 with an error on stderr: %s", r.stderr)
	}
	_ = root
}

// Bake ignores the cluster version, but an environment KUBERNETES_VERSION it
// cannot parse (a minor line) makes bake exit 2.
func TestBakeRefusesIrrelevantKubernetesVersionEnv(t *testing.T) {
	root, _, args := bakedRootWith(t, twoVersions)
	_ = root
	r := run(t, map[string]string{"KUBERNETES_VERSION": "1.35"}, append([]string{"--mode=bake"}, args...)...)
	if r.code != ExitOK {
		t.Errorf("bake exit %d with KUBERNETES_VERSION=1.35: %s", r.code, r.stderr)
	}
}

// --require-deps promises a failure when the node lacks a dependency; with
// no dpkg status at all nothing is checked and boot succeeds without a word.
func TestRequireDepsSilentWhenUnchecked(t *testing.T) {
	root, _, args := bakedRootWith(t, twoVersions)
	_ = root
	r := run(t, nil, append([]string{"--mode=boot", "--require-deps", "--k8s-version", "1.35.7"}, args...)...)
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code == ExitOK && !strings.Contains(r.stdout+r.stderr, "dpkg") {
		t.Errorf("--require-deps boot succeeded without checking anything and without saying so")
	}
}

// TestInstallAcrossFilesystems: the credential provider's target is under
// /var/lib/kubelet, often a mount of its own, where no rename from /opt/bin
// can reach; boot copies it there instead, checked against the record.
func TestInstallAcrossFilesystems(t *testing.T) {
	// kubelet's target under /var/lib/kubelet, mounted apart like the
	// credential provider's usually is.
	root, _, args := bakedRootWith(t, `tools:
  kubelet:
    target: /var/lib/kubelet/bin/kubelet
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`)
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := filepath.Join(root, "var/lib/kubelet")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	boot := append([]string{"--mode=boot", "--k8s-version", "1.35.7"}, args...)
	run(t, nil, boot...).must(t, ExitOK)
	if out := runBinary(t, filepath.Join(mnt, "bin/kubelet")); out != "Kubernetes v1.35.7\n" {
		t.Errorf("kubelet across filesystems reports %q", out)
	}
	if exists(filepath.Join(root, "opt/bin/kubelet-1.35.7")) {
		t.Error("the versioned binary stayed after the copy")
	}
	if ops := planOps(t, boot...); len(ops) != 0 {
		t.Errorf("second boot plans %v", ops)
	}
	run(t, nil, append([]string{"--mode=verify", "--k8s-version", "1.35.7"}, args...)...).must(t, ExitOK)
}
