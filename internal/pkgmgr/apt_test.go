package pkgmgr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// fixtureVersions are the upstream versions of the test repositories: 1.34.1
// must never select 1.34.10, 1.34.10 never its release candidate, and 1.33.5
// is on another minor line.
var fixtureVersions = []string{"1.33.5", "1.34.1", "1.34.10", "1.34.10~rc.1", "1.34.11"}

// aptHostPaths are what apt-get and dpkg write with the default
// configuration.
var aptHostPaths = []string{
	"/etc/apt", "/etc/apt/sources.list.d",
	"/var/lib/apt", "/var/lib/apt/lists", "/var/lib/apt/lists/partial", "/var/lib/apt/extended_states",
	"/var/cache/apt", "/var/cache/apt/archives", "/var/cache/apt/archives/partial",
	"/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin",
	"/var/lib/dpkg", "/var/lib/dpkg/status", "/var/log/apt", "/var/log/dpkg.log",
}

// aptRepository builds a flat apt repository of tiny kubelet packages for
// amd64 and arm64 and returns the ExtraArgs that point apt at it and keep
// every file apt writes under tmp.
func aptRepository(t *testing.T, tmp, postinstMarker string) []string {
	t.Helper()
	repo := filepath.Join(tmp, "repo")
	if err := os.MkdirAll(filepath.Join(repo, "pool"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, up := range fixtureVersions {
		v := up + "-1.1"
		for _, arch := range []string{"amd64", "arm64"} {
			root := filepath.Join(tmp, "build", v+"_"+arch)
			writeFile(t, filepath.Join(root, "DEBIAN", "control"),
				"Package: kubelet\nVersion: "+v+"\nArchitecture: "+arch+"\nMaintainer: test <test@example.com>\nDescription: test kubelet\n", 0o644)
			// Proof that nothing is installed: this script must never run.
			writeFile(t, filepath.Join(root, "DEBIAN", "postinst"), "#!/bin/sh\ntouch "+postinstMarker+"\n", 0o755)
			writeFile(t, filepath.Join(root, "usr", "bin", "kubelet"), "kubelet "+v+" "+arch+"\n", 0o755)
			runTool(t, tmp, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root,
				filepath.Join(repo, "pool", "kubelet_"+v+"_"+arch+".deb"))
		}
	}
	// --multiversion: without it dpkg-scanpackages keeps only the newest.
	writeFile(t, filepath.Join(repo, "Packages"), runTool(t, repo, "dpkg-scanpackages", "--multiversion", "pool", "/dev/null"), 0o644)
	// apt creates neither the lists directory nor its partial/ (a node has them).
	if err := os.MkdirAll(filepath.Join(tmp, "lists", "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	sources := filepath.Join(tmp, "sources.list")
	writeFile(t, sources, "deb [trusted=yes] file:"+repo+" ./\n", 0o644)
	return []string{
		"-o", "Dir::Etc::SourceList=" + sources,
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(tmp, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(tmp, "cache"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Architectures::=amd64",
		"-o", "APT::Architectures::=arm64",
		// The _apt user cannot read a root-owned temp dir; without this apt
		// warns and downloads as root anyway.
		"-o", "APT::Sandbox::User=root",
	}
}

func TestAptRealRepository(t *testing.T) {
	requireTools(t, "apt-get", "apt-cache", "dpkg-deb", "dpkg-scanpackages")
	host := snapshot(aptHostPaths...)
	tmp := t.TempDir()
	marker := filepath.Join(tmp, "postinst-ran")
	extra := aptRepository(t, tmp, marker)
	m, err := New(platform.Deb, Options{ExtraArgs: extra, Retries: 1, Backoff: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	deb := func(s string) pkgversion.Version { return pkgversion.MustParse(platform.Deb, s) }

	// The lists start empty, as on an image that removed them: the first
	// Fetch must run apt-get update by itself.
	t.Run("fetch", func(t *testing.T) {
		for _, tt := range []struct {
			want string
			arch platform.Arch
		}{
			{"1.34.1-1.1", platform.AMD64},
			{"1.34.10-1.1", platform.AMD64},
			{"1.34.10~rc.1-1.1", platform.AMD64},
			{"1.34.1-1.1", platform.ARM64},
			{"1.34.11-1.1", platform.ARM64},
		} {
			t.Run(tt.want+"_"+string(tt.arch), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "opt", "kubelet", "downloads")
				p, err := Fetch(t.Context(), m, "kubelet", deb(tt.want), tt.arch, dir)
				if err != nil {
					t.Fatal(err)
				}
				onlyEntry(t, dir, filepath.Base(p))
				got := runTool(t, tmp, "dpkg-deb", "--showformat=${Package} ${Version} ${Architecture}", "--show", p)
				if want := "kubelet " + tt.want + " " + string(tt.arch); got != want {
					t.Errorf("downloaded package is %q, want %q", got, want)
				}
			})
		}
	})

	if lists, _ := filepath.Glob(filepath.Join(tmp, "lists", "*_Packages*")); len(lists) == 0 {
		t.Error("Fetch did not run apt-get update although the lists were empty")
	}

	t.Run("versions", func(t *testing.T) {
		vs, err := m.Versions(t.Context(), "kubelet", platform.ARM64)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.String())
		}
		if want := "1.33.5-1.1 1.34.1-1.1 1.34.10~rc.1-1.1 1.34.10-1.1 1.34.11-1.1"; strings.Join(got, " ") != want {
			t.Errorf("versions = %v, want %s", got, want)
		}
	})

	t.Run("not offered", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Fetch(t.Context(), m, "kubelet", deb("1.34.2-1.1"), platform.ARM64, dir)
		if !errors.Is(err, ErrVersionNotOffered) {
			t.Fatalf("err = %v, want ErrVersionNotOffered", err)
		}
		want := "kubelet=1.34.2-1.1 (arm64) is not offered by the apt-get repositories: 1.34.x versions offered: 1.34.1-1.1, 1.34.10~rc.1-1.1, 1.34.10-1.1, 1.34.11-1.1"
		if err.Error() != want {
			t.Errorf("message\n got: %s\nwant: %s", err, want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s holds %d files after a failed fetch", dir, len(entries))
		}
	})

	t.Run("unknown package", func(t *testing.T) {
		_, err := Fetch(t.Context(), m, "kubectl", deb("1.34.1-1.1"), platform.AMD64, t.TempDir())
		if !errors.Is(err, ErrVersionNotOffered) || !strings.Contains(err.Error(), "they offer no 1.34.x version of kubectl for amd64 (0 versions in all)") {
			t.Errorf("err = %v", err)
		}
	})

	if _, err := os.Lstat(marker); err == nil {
		t.Error("a maintainer script ran: the package was installed, not only downloaded")
	}
	host.unchanged(t)
}
