package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBootPlansForEveryServedVersion is the pull-request check: a boot is
// planned for every cluster version the entries name, and the one a tool
// has no entry for exits with that tool's code.
func TestBootPlansForEveryServedVersion(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.37.1-ubuntu24.04u1"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.37.1-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.36.5-ubuntu24.04u1", k8sVersion: "1.36"}
`)
	args := []string{"--dry-run", "--mode=boot", "--k8s-version", "all", "--root", root, "--arch", "amd64", manifest}
	r := run(t, nil, append([]string{"--detailed-exitcode"}, args...)...).must(t, 205)
	for _, want := range []string{
		"boot plan for ubuntu-24.04 amd64 for Kubernetes 1.36.3:",
		"boot plan for ubuntu-24.04 amd64 for Kubernetes 1.37.1:",
		"problem: no azure-acr-credential-provider entry for ubuntu-24.04 amd64 serves Kubernetes 1.37.1",
		"2 boot plans for ubuntu-24.04 amd64 (Kubernetes 1.36.3 to 1.37.1): 1 with problems.",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if i, j := strings.Index(r.stdout, "1.36.3:"), strings.Index(r.stdout, "1.37.1:"); i > j {
		t.Errorf("plans are not oldest first:\n%s", r.stdout)
	}
	// Without --detailed-exitcode a dry-run prints and exits 0, as for one version.
	run(t, nil, args...).must(t, ExitOK)

	// A manifest whose every served version is covered has changes, no problems.
	writeFile(t, manifest, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.36.3-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.36.5-ubuntu24.04u1", k8sVersion: "1.36"}
`)
	run(t, nil, append([]string{"--detailed-exitcode"}, args...)...).must(t, ExitChanges)

	for _, bad := range [][]string{
		{"--mode=boot", "--k8s-version", "all", "--root", root, manifest},
		{"--dry-run", "--k8s-version", "all", "--root", root, manifest},
	} {
		r := run(t, nil, bad...).must(t, ExitBadInput)
		if !strings.Contains(r.stderr, "goes with --dry-run --mode=boot") {
			t.Errorf("%q: stderr %q", bad, r.stderr)
		}
	}
}

// TestManifestFromStdinAndNoFIFO: "-" reads the manifest from standard
// input; a FIFO named as the manifest is refused at once, not waited on.
func TestManifestFromStdinAndNoFIFO(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	yaml := "components:\n  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.35.7-ubuntu24.04u1\"}\n  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: \"1.35.7-ubuntu24.04u1\"}\n"
	r := runStdin(t, nil, strings.NewReader(yaml), "--dry-run", "--root", root, "--arch", "amd64", "-").must(t, ExitOK)
	if !strings.Contains(r.stdout, "kubelet=1.35.7-ubuntu24.04u1") {
		t.Errorf("the plan is not of the manifest on stdin:\n%s", r.stdout)
	}
	r = runStdin(t, nil, strings.NewReader("components: [\n"), "--dry-run", "--root", root, "-").must(t, ExitBadInput)
	if !strings.Contains(r.stderr, "manifest (standard input)") {
		t.Errorf("stderr does not name standard input: %s", r.stderr)
	}
	fifo := filepath.Join(t.TempDir(), "components.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- run(t, nil, "--dry-run", "--root", root, fifo) }()
	select {
	case r := <-done:
		r.must(t, ExitBadInput)
		if !strings.Contains(r.stderr, "not a regular file: pass a pipe as - (standard input)") {
			t.Errorf("stderr: %s", r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a FIFO manifest blocked the run")
	}
}
