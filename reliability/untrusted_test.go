package reliability_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"
)

// untrusted counts the cases of issue 12's classes, for the summary.
var untrusted struct {
	sync.Mutex
	counts map[string]int
}

func countUntrusted(class string) {
	untrusted.Lock()
	if untrusted.counts == nil {
		untrusted.counts = map[string]int{}
	}
	untrusted.counts[class]++
	c := untrusted.counts
	line := fmt.Sprintf("untrusted input: %d runs that must execute nothing from a package, %d binaries of the wrong arch refused, %d foreign files in /opt/bin left alone, %d FIFOs where files belong met without blocking, %d corrupt records survived, %d SIGTERMs mid-bake exiting 6 with every target whole, %d dry-runs of a plan with problems exiting its run's code, %d failed installs across filesystems leaving a true record",
		c["exec"], c["arch"], c["foreign"], c["fifo"], c["record"], c["signal"], c["problems"], c["crossfs"])
	untrusted.Unlock()
	report("5 untrusted", "%s", line)
}

// hostileBinary is a real static ELF that says it is Kubernetes v<version>
// (build info and data, as pkgbuild's) and, when run, writes marker and
// leaves a child that holds its stdout open for a minute.
func hostileBinary(t testing.TB, version, marker string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"os"
	"strconv"
	"time"
)

var gitVersion, marker string

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		time.Sleep(time.Minute)
		return
	}
	os.WriteFile(marker, []byte("ran\n"), 0o644)
	os.StartProcess(os.Args[0], []string{os.Args[0], "child"}, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	os.Stdout.WriteString("Kubernetes " + gitVersion + " env=" + strconv.Itoa(len(os.Environ())) + "\n")
}
`
	writeFile(t, filepath.Join(dir, "main.go"), []byte(src), 0o644)
	writeFile(t, filepath.Join(dir, "go.mod"), []byte("module hostile\n\ngo 1.22\n"), 0o644)
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.gitVersion=v"+version+" -X main.marker="+marker+" -X k8s.io/component-base/version.gitVersion=v"+version, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the hostile binary: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// oneKubelet is a root with a kubelet package (of arch, carrying bin) and a
// plain kubectl package in its cache, and its manifest.
func oneKubelet(t testing.TB, arch platform.Arch, bin []byte) (root, manifest string) {
	t.Helper()
	pkgbuild.RequireFormat(t, platform.Deb)
	root = t.TempDir()
	writeFile(t, filepath.Join(root, "etc/os-release"), []byte("ID=ubuntu\nVERSION_ID=\"24.04\"\n"), 0o644)
	kubectl, err := pkgbuild.Binary(platform.AMD64, "1.35.7")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("components:\n")
	// In this order: the first tool's code is the one a failing boot exits with.
	for _, tc := range []struct {
		tool    string
		content []byte
	}{{"kubelet", bin}, {"kubectl", kubectl}} {
		tool, content := tc.tool, tc.content
		deb, err := pkgbuild.Deb(t.TempDir(), pkgbuild.Spec{Name: tool, Version: "1.35.7-ubuntu24.04u1", Arch: arch,
			Files: map[string][]byte{"usr/bin/" + tool: content}})
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, "opt", tool, "downloads", filepath.Base(deb))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(deb, dst); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - tool: %s\n    distro: ubuntu-24.04\n    packageVersion: \"1.35.7-ubuntu24.04u1\"\n", tool)
	}
	manifest = filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, manifest, []byte(b.String()), 0o644)
	return root, manifest
}

// TestBakeExecutesNothing bakes and boots a package whose binary, if run,
// writes a marker: nothing may run it. verify --exec does run it, inside
// the root, and returns although its child holds stdout open.
func TestBakeExecutesNothing(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	root, manifest := oneKubelet(t, platform.AMD64, hostileBinary(t, "1.35.7", marker))
	r := run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 0)
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("bake ran the package's binary:\n%s", r)
	}
	if _, data, _ := readRecord(root); !strings.Contains(string(data), `"reported_version": "v1.35.7 (build info)"`) {
		t.Errorf("the record does not hold the version read from the binary:\n%s", data)
	}
	countUntrusted("exec")
	r = run(t, []string{"SECRET_TOKEN=x"}, "--mode=verify", "--exec", "--root", root, "--arch", "amd64", manifest)
	if r.code != 0 || r.dur > 8*time.Second {
		t.Fatalf("verify --exec of a binary whose child holds stdout: %s (in %s)", r, r.dur)
	}
	if !strings.Contains(r.stdout, `reports "Kubernetes v1.35.7 env=0"`) {
		t.Errorf("verify --exec ran the binary with an environment:\n%s", r.stdout)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("verify --exec ran the binary outside the root")
	}
	countUntrusted("exec")
	run(t, nil, "--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", manifest).must(t, 0)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("boot ran the package's binary")
	}
	countUntrusted("exec")
}

// TestWrongArchRefused bakes and boots an amd64 package that carries an
// arm64 binary: the action fails naming the file, the package and both
// arches, and nothing is installed or recorded.
func TestWrongArchRefused(t *testing.T) {
	t.Parallel()
	arm, err := pkgbuild.Binary(platform.ARM64, "1.35.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"bake", "boot"} {
		root, manifest := oneKubelet(t, platform.AMD64, arm)
		args := []string{"--mode=" + mode, "--root", root, "--arch", "amd64", manifest}
		want, path := 1, "opt/bin/kubelet-1.35.7"
		if mode == "boot" {
			args, want, path = append(args, "--k8s-version", "1.35.7"), 121, "opt/bin/kubelet"
		}
		r := run(t, nil, args...).must(t, want)
		if !strings.Contains(r.stderr, "./usr/bin/kubelet in /opt/kubelet/downloads/") || !strings.Contains(r.stderr, "labelled amd64) is built for arm64") {
			t.Errorf("%s: the error does not name the file, the package and both arches:\n%s", mode, r.stderr)
		}
		if _, err := os.Lstat(filepath.Join(root, path)); err == nil {
			t.Errorf("%s installed the arm64 binary at /%s", mode, path)
		}
		if rec, _, err := readRecord(root); err == nil {
			if _, ok := rec.Files["/"+path]; ok {
				t.Errorf("%s recorded the refused /%s", mode, path)
			}
		}
		countUntrusted("arch")
	}
}

// TestBootDeletesOnlyItsOwn boots an image with files in /opt/bin whose
// names look like versioned binaries but that reconcile never wrote: they
// stay, each is a note, and a second boot plans nothing.
func TestBootDeletesOnlyItsOwn(t *testing.T) {
	t.Parallel()
	c := newCrashCase(t, smallScenario(platform.Deb), "boot")
	root := copyRoot(t, c.start)
	foreign := []string{"opt/bin/kubectl-1password", "opt/bin/kubelet-1.33.0.bak", "opt/bin/kubectl-2fa-empty", "opt/bin/kubelet-1.33.0.d"}
	writeFile(t, filepath.Join(root, foreign[0]), []byte("#!/bin/sh\n"), 0o755)
	writeFile(t, filepath.Join(root, foreign[1]), []byte("old kubelet"), 0o755)
	if err := os.Mkdir(filepath.Join(root, foreign[2]), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, foreign[3], "10-flags.conf"), []byte("x"), 0o644)
	r := run(t, nil, c.args(root)...).must(t, 0)
	for _, f := range foreign {
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			t.Errorf("boot deleted /%s: %v", f, err)
		}
		if !strings.Contains(r.stdout, "/"+f+" is not a binary reconcile wrote") {
			t.Errorf("no note for /%s:\n%s", f, r.stdout)
		}
		countUntrusted("foreign")
	}
	if ops := c.dryRun(t, root); len(ops) != 0 {
		t.Errorf("a second boot plans %v", ops)
	}
}

// TestFIFOsDoNotBlock puts a real FIFO where reconcile reads a file: the
// run ends at once (nothing ever writes to the FIFO) with the code of what
// it met.
func TestFIFOsDoNotBlock(t *testing.T) {
	t.Parallel()
	c := newCrashCase(t, smallScenario(platform.Deb), "boot")
	for _, tc := range []struct {
		path, mode string
		flags      []string
		want       int
		says       string
	}{
		{"etc/os-release", "bake", nil, 2, "not a regular file"},
		{recordPath, "boot", nil, 0, "state record is corrupt"},
		{recordPath, "bake", nil, 0, "state record is corrupt"},
		{"var/lib/dpkg/status", "boot", nil, 0, "boot done"},
		{lockPath, "boot", nil, 121, "not a regular file"},
		{lockPath, "bake", nil, 1, "not a regular file"},
	} {
		t.Run(strings.ReplaceAll(tc.path, "/", "_")+"-"+tc.mode, func(t *testing.T) {
			root := copyRoot(t, c.start)
			p := filepath.Join(root, tc.path)
			os.Remove(p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"--mode=" + tc.mode, "--root", root, "--arch", "amd64", "--require-deps=false", c.manifest}
			if tc.mode == "boot" {
				args = append(args, "--k8s-version", bootK8s)
			}
			cmd, wait := start(t, nil, args...)
			timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			r := wait()
			timer.Stop()
			if r.killed {
				t.Fatalf("blocked on the FIFO at /%s", tc.path)
			}
			if r.code != tc.want || !strings.Contains(r.stdout+r.stderr, tc.says) {
				t.Errorf("want exit %d saying %q, got %s", tc.want, tc.says, r)
			}
			countUntrusted("fifo")
		})
	}
}

// TestCorruptRecordAtBoot boots with a record that is bad JSON or has data
// after the JSON: boot serves from the packages with a warning, and with
// the packages gone exits with the tool's code.
func TestCorruptRecordAtBoot(t *testing.T) {
	t.Parallel()
	c := newCrashCase(t, smallScenario(platform.Deb), "boot")
	good, err := os.ReadFile(filepath.Join(c.start, recordPath))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"bad-json": []byte("{\"format\": 1, \"files\": {"), "trailing-data": append(append([]byte{}, good...), good...)} {
		t.Run(name, func(t *testing.T) {
			root := copyRoot(t, c.start)
			writeFile(t, filepath.Join(root, recordPath), data, 0o644)
			events := "/var/log/reconcile-events"
			r := run(t, nil, append(c.args(root), "--events-dir", events)...).must(t, 0)
			if !strings.Contains(r.stdout, "state record is corrupt") {
				t.Errorf("no warning:\n%s", r)
			}
			if b, err := os.ReadFile(latestEvent(t, filepath.Join(root, events))); err != nil || !strings.Contains(string(b), "state record is corrupt") {
				t.Errorf("the run's event lacks the warning: %s %v", b, err)
			}
			if _, _, err := readRecord(root); err != nil {
				t.Errorf("the record was not rewritten whole: %v", err)
			}
			countUntrusted("record")
			// Without packages, the untrusted versioned binaries cannot
			// be served: the tool's code, not 1.
			root = copyRoot(t, c.start)
			writeFile(t, filepath.Join(root, recordPath), data, 0o644)
			for _, comp := range c.s.comps {
				os.RemoveAll(filepath.Join(root, "opt", comp.tool))
			}
			run(t, nil, append(c.args(root), emptyAptRepo(t)...)...).must(t, 121)
			countUntrusted("record")
		})
	}
}

func latestEvent(t testing.TB, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no events in %s: %v", dir, err)
	}
	last := ""
	for _, e := range entries {
		var ev struct{ TaskName string }
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if json.Unmarshal(b, &ev) == nil && ev.TaskName == "reconcile.boot" {
			last = filepath.Join(dir, e.Name())
		}
	}
	return last
}

// TestSIGTERMMidBake sends SIGTERM to a bake of big packages once it is
// writing: it exits 6 within a second, leaves no temp file, and every
// versioned binary is either absent or whole and recorded.
func TestSIGTERMMidBake(t *testing.T) {
	t.Parallel()
	s := bigScenario()
	root, manifest := newRoot(t, s)
	for trial := range 3 {
		tr := copyRoot(t, root)
		cmd, wait := start(t, nil, "--mode=bake", "--parallel", "1", "--root", tr, "--arch", "amd64", manifest)
		var sent atomic.Int64
		go func() {
			// Once the first binary is being written.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if m, _ := filepath.Glob(filepath.Join(tr, "opt/bin", tempPrefix+"*")); len(m) > 0 {
					time.Sleep(time.Duration(trial) * 30 * time.Millisecond)
					sent.Store(time.Now().UnixNano())
					cmd.Process.Signal(syscall.SIGTERM)
					return
				}
			}
		}()
		r := wait()
		if sent.Load() == 0 {
			t.Fatalf("bake finished before it could be interrupted: %s", r)
		}
		if took := time.Since(time.Unix(0, sent.Load())); r.code != 6 || took > 1500*time.Millisecond {
			t.Fatalf("trial %d: want exit 6 within a second of SIGTERM, got %s after %s", trial, r, took)
		}
		snap := snapshot(t, tr)
		if tmp := snap.temps(); len(tmp) > 0 {
			t.Errorf("trial %d: temp files left: %v", trial, tmp)
		}
		rec, _, err := readRecord(tr)
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("trial %d: record: %v", trial, err)
		}
		for _, comp := range s.comps {
			f, ok := snap[strings.TrimPrefix(comp.versioned(), "/")]
			if !ok {
				continue
			}
			want := pkg(t, s.format, comp)
			if f.sha256 != want.sha256 {
				t.Errorf("trial %d: %s is not whole", trial, comp.versioned())
			}
			if _, ok := rec.Files[comp.versioned()]; !ok {
				t.Errorf("trial %d: %s exists but is not recorded", trial, comp.versioned())
			}
		}
		run(t, nil, "--mode=bake", "--root", tr, "--arch", "amd64", manifest).must(t, 0)
		countUntrusted("signal")
	}
}

// TestDryRunProblemsExitCode: --dry-run --detailed-exitcode of a plan
// with problems exits the code the run would, never 0 or 5.
func TestDryRunProblemsExitCode(t *testing.T) {
	t.Parallel()
	// The manifest's packages are not in the cache, and --offline: bake
	// has problems.
	_, manifest := oneKubelet(t, platform.AMD64, nil)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/os-release"), []byte("ID=ubuntu\nVERSION_ID=\"24.04\"\n"), 0o644)
	run(t, nil, "--dry-run", "--detailed-exitcode", "--offline", "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 1)
	countUntrusted("problems")
	run(t, nil, "--dry-run", "--detailed-exitcode", "--offline", "--mode=boot", "--k8s-version", "1.34.1", "--root", root, "--arch", "amd64", manifest).must(t, 121)
	countUntrusted("problems")
}

// TestCrossFilesystemInstallFails boots an image whose credential
// provider's target is on a small filesystem of its own: the rename across
// filesystems becomes a copy, which runs out of space. Boot exits with the
// tool's code, and the record names no target that is not there; the
// versioned binary stays for the next boot.
func TestCrossFilesystemInstallFails(t *testing.T) {
	t.Parallel()
	s := scenario{name: "deb-crossfs", format: platform.Deb, distro: "ubuntu-24.04", comps: []component{
		{tool: "kubelet", pkgVersion: "1.35.7-ubuntu24.04u1"},
		{tool: "kubectl", pkgVersion: "1.35.7-ubuntu24.04u1"},
		{tool: "azure-acr-credential-provider", pkgVersion: "1.35.8-ubuntu24.04u1", k8s: "1.35", pad: bigPad},
	}}
	root, manifest := newRoot(t, s)
	run(t, nil, "--mode=bake", "--root", root, "--arch", "amd64", manifest).must(t, 0)
	mountSmall(t, filepath.Join(root, "var/lib/kubelet/credential-provider"))
	r := run(t, nil, "--mode=boot", "--k8s-version", bootK8s, "--root", root, "--arch", "amd64", manifest).must(t, 205)
	if !strings.Contains(r.stderr, "across filesystems") || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("the error does not say the copy across filesystems ran out of space:\n%s", r.stderr)
	}
	rec, data, err := readRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, root)
	for p := range rec.Files {
		if _, ok := after[rel(p)]; !ok {
			t.Errorf("the record names %s, which is not there:\n%s", p, data)
		}
	}
	if _, ok := after["opt/bin/azure-acr-credential-provider-1.35.8"]; !ok {
		t.Error("the versioned credential provider is gone: the next boot has nothing to install")
	}
	if temps := after.temps(); len(temps) > 0 {
		t.Errorf("temp files left: %v", temps)
	}
	countUntrusted("crossfs")
}
