package reliability_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/platform"
)

// mountSmall mounts an 8 MiB tmpfs on dir (root only), unmounted at the end
// of the test. Without root, or where mounting is not allowed, it skips;
// under CI (which runs as root) a failed mount fails.
func mountSmall(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full tests mount a small tmpfs: run as root (CI does)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mounting an 8 MiB tmpfs on %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// diskFullScenario: 1.34.10 (and kubectl 1.35.7) fit in 8 MiB, the 24 MiB
// kubelet 1.35.7 does not.
func diskFullScenario() scenario {
	return scenario{name: "deb-diskfull", format: platform.Deb, distro: "ubuntu-24.04", comps: []component{
		{tool: "kubelet", pkgVersion: "1.34.10-ubuntu24.04u1"},
		{tool: "kubectl", pkgVersion: "1.34.10-ubuntu24.04u1"},
		{tool: "kubelet", pkgVersion: "1.35.7-ubuntu24.04u1", pad: bigPad},
		{tool: "kubectl", pkgVersion: "1.35.7-ubuntu24.04u1"},
	}}
}

// TestDiskFull extracts a binary larger than the free space of /opt/bin, at
// bake and at boot: the run fails with an error that says "no space left on
// device" and names the path, removes its temp file, and leaves every
// previous file (versioned binary, boot target, state record) as it was.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	s := diskFullScenario()
	big := s.comps
	smallManifest := scenario{format: s.format, distro: s.distro, comps: s.comps[:2:2]}.manifest()
	// What the failed run may have written besides: kubectl 1.35.7, whole.
	kubectl := pkg(t, s.format, s.comps[3]).sha256
	may := map[string]string{"opt/bin/kubectl-1.35.7": kubectl, "opt/bin/kubectl": kubectl}

	t.Run("bake", func(t *testing.T) {
		root, manifest := newRoot(t, s)
		mountSmall(t, filepath.Join(root, "opt/bin"))
		// The previous image: the versions that fit.
		writeFile(t, manifest, []byte(smallManifest), 0o644)
		run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 0)
		before := snapshot(t, root)
		writeFile(t, manifest, []byte(scenario{format: s.format, distro: s.distro, comps: big}.manifest()), 0o644)
		r := run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 1)
		checkDiskFull(t, r, root, before, may, "/opt/bin/kubelet-1.35.7")
	})

	t.Run("boot", func(t *testing.T) {
		root, manifest := newRoot(t, s)
		mountSmall(t, filepath.Join(root, "opt/bin"))
		writeFile(t, manifest, []byte(smallManifest), 0o644)
		run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 0)
		// The node runs 1.34.10 (the cache stays for the next boot).
		run(t, nil, "--mode=boot", "--k8s-version", "1.34.10", "--keep-cache", "--root", root, "--arch", "amd64", manifest).must(t, 0)
		before := snapshot(t, root)
		if before["opt/bin/kubelet"].sha256 != pkg(t, s.format, s.comps[0]).sha256 {
			t.Fatal("the 1.34.10 boot did not install kubelet 1.34.10")
		}
		// Upgrade: 1.35.7 has no versioned binary, so boot extracts the
		// cached package onto the target, which does not fit.
		writeFile(t, manifest, []byte(scenario{format: s.format, distro: s.distro, comps: big}.manifest()), 0o644)
		r := run(t, nil, "--mode=boot", "--k8s-version", "1.35.7", "--keep-cache", "--root", root, "--arch", "amd64", manifest).must(t, 121)
		checkDiskFull(t, r, root, before, may, "/opt/bin/kubelet")
	})
}

// checkDiskFull: the error names the path and ENOSPC, no temp file stays,
// and every file is as before, but for the complete new files in may and
// the state record, which may only have gained their entries.
func checkDiskFull(t *testing.T, r result, root string, before tree, may map[string]string, path string) {
	t.Helper()
	after := snapshot(t, root)
	if temps := after.temps(); len(temps) > 0 {
		t.Errorf("temp files left after the failed extraction: %s", strings.Join(temps, ", "))
	}
	skip := append(after.temps(), lockPath, recordPath)
	for p, sum := range may {
		if _, existed := before[p]; !existed && after[p].sha256 == sum {
			skip = append(skip, p)
		}
	}
	if d := diff(before, after, true, skip...); len(d) > 0 {
		t.Errorf("the failed run changed the disk:\n  %s", strings.Join(d, "\n  "))
	}
	// The record describes what is on disk: the failed file is not in it.
	rec, _, err := readRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range rec.Files {
		if f, ok := after[rel(p)]; !ok || f.sha256 != b.SHA256 || f.size != b.Size {
			t.Errorf("the state record says %s has sha256 %.12s (%d bytes); on disk: %.12s (%d bytes)", p, b.SHA256, b.Size, f.sha256, f.size)
		}
	}
	// Parallel extractions may fail too: quote the one about path.
	msg := ""
	for _, l := range strings.Split(strings.ReplaceAll(r.stderr, root, "<root>"), "\n") {
		if strings.Contains(l, " to "+path+" ") && strings.Contains(l, "no space left on device") {
			msg = strings.TrimPrefix(l, "reconcile: ")
		}
	}
	if msg == "" {
		t.Errorf("no error says \"no space left on device\" for %s:\n%s", path, r.stderr)
	}
	report("3 disk full "+filepath.Base(path), "disk full: extracting %s onto an 8 MiB tmpfs exits %d, no temp file left, previous files intact: %s", path, r.code, msg)
	t.Logf("exit %d: %s", r.code, msg)
}
