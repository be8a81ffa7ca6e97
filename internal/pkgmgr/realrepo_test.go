package pkgmgr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// fixtureVersions are the upstream versions of the test repositories: 1.34.1
// must never select 1.34.10, 1.34.10 never its release candidate, and 1.33.5
// is on another minor line.
var fixtureVersions = []string{"1.33.5", "1.34.1", "1.34.10", "1.34.10~rc.1", "1.34.11"}

// aptHostPaths are what apt-get and dpkg write with the default
// configuration.
func aptHostPaths() []string {
	return []string{
		"/etc/apt", "/etc/apt/sources.list.d",
		"/var/lib/apt", "/var/lib/apt/lists", "/var/lib/apt/lists/partial", "/var/lib/apt/extended_states",
		"/var/cache/apt", "/var/cache/apt/archives", "/var/cache/apt/archives/partial",
		"/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin",
		"/var/lib/dpkg", "/var/lib/dpkg/status", "/var/log/apt", "/var/log/dpkg.log",
	}
}

// dnfHostPaths are what dnf and rpm write with the default configuration
// (Debian's rpm keeps its database in ~/.rpmdb). /var/tmp is not among them
// although rpmbuild uses it by default: other processes write there too.
func dnfHostPaths() []string {
	paths := []string{
		"/etc/dnf", "/etc/yum.repos.d", "/var/cache/dnf", "/var/cache/dnf/packages.db",
		"/var/lib/dnf", "/var/lib/rpm", "/var/log/dnf.log", "/var/log/dnf.librepo.log",
		"/var/log/dnf.rpm.log", "/var/log/hawkey.log",
	}
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".rpmdb"))
	}
	return paths
}

// fixtureRepository builds tiny kubelet packages of fixtureVersions-release
// in format for amd64 and arm64, each with a postinst (%post) that touches
// marker, into a local repository under tmp, and returns the ExtraArgs that
// point the package manager at it alone and keep every file it writes under
// tmp.
func fixtureRepository(t *testing.T, format platform.Format, release, tmp, marker string) []string {
	t.Helper()
	pkgs := filepath.Join(tmp, "build")
	if err := os.MkdirAll(pkgs, 0o755); err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, up := range fixtureVersions {
		v := up + "-" + release
		for _, arch := range platform.Arches {
			p, err := pkgbuild.Build(format, pkgs, pkgbuild.Spec{
				Name: "kubelet", Version: v, Arch: arch,
				Files: map[string][]byte{"usr/bin/kubelet": []byte("kubelet " + v + " " + arch.In(format) + "\n")},
				// Proof that nothing is installed: this script must never run.
				Postinst: "touch " + marker,
			})
			if err != nil {
				t.Fatal(err)
			}
			built = append(built, p)
		}
	}
	repo := pkgbuild.AptRepo
	if format == platform.RPM {
		repo = pkgbuild.DnfRepo
	}
	extra, err := repo(tmp, built...)
	if err != nil {
		t.Fatal(err)
	}
	return extra
}

// TestRealRepository runs each package manager against a local repository
// of real packages.
func TestRealRepository(t *testing.T) {
	type fetchCase struct {
		want string
		arch platform.Arch
	}
	for _, tc := range []struct {
		format    platform.Format
		tools     []string
		hostPaths []string
		release   string // of every fixture package
		// query prints "name version arch" of a downloaded package.
		query      func(t *testing.T, tmp, p string) string
		fetch      []fetchCase
		versions   string // offered for arm64
		notOffered string // Fetch's message for kubelet 1.34.2 on arm64
		unknown    string // in Fetch's message for kubectl 1.34.1 on amd64
	}{
		{
			format:    platform.Deb,
			tools:     []string{"apt-get", "apt-cache", "dpkg-deb", "dpkg-scanpackages"},
			hostPaths: aptHostPaths(),
			release:   "1.1",
			query: func(t *testing.T, tmp, p string) string {
				return runTool(t, tmp, "dpkg-deb", "--showformat=${Package} ${Version} ${Architecture}", "--show", p)
			},
			fetch: []fetchCase{
				{"1.34.1-1.1", platform.AMD64},
				{"1.34.10-1.1", platform.AMD64},
				{"1.34.10~rc.1-1.1", platform.AMD64},
				{"1.34.1-1.1", platform.ARM64},
				{"1.34.11-1.1", platform.ARM64},
			},
			versions:   "1.33.5-1.1 1.34.1-1.1 1.34.10~rc.1-1.1 1.34.10-1.1 1.34.11-1.1",
			notOffered: "kubelet=1.34.2-1.1 (arm64) is not offered by the apt-get repositories: 1.34.x versions offered: 1.34.1-1.1, 1.34.10~rc.1-1.1, 1.34.10-1.1, 1.34.11-1.1",
			unknown:    "they offer no 1.34.x version of kubectl for amd64 (0 versions in all)",
		},
		{
			format:    platform.RPM,
			tools:     []string{"dnf", "rpmbuild", "createrepo_c", "rpm"},
			hostPaths: dnfHostPaths(),
			release:   "1.azl3",
			query: func(t *testing.T, tmp, p string) string {
				return runTool(t, tmp, "rpm", "--define", "_dbpath "+filepath.Join(tmp, "rpmdb"), "-qp", "--nosignature", "--nodigest",
					"--queryformat", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", p)
			},
			fetch: []fetchCase{
				{"1.34.1-1.azl3", platform.AMD64},
				{"1.34.10-1.azl3", platform.AMD64},
				{"1.34.10~rc.1-1.azl3", platform.AMD64},
				{"1.34.1-1.azl3", platform.ARM64},
				{"1.34.10-1.azl3", platform.ARM64},
			},
			versions:   "1.33.5-1.azl3 1.34.1-1.azl3 1.34.10~rc.1-1.azl3 1.34.10-1.azl3 1.34.11-1.azl3",
			notOffered: "kubelet=1.34.2-1.azl3 (aarch64) is not offered by the dnf repositories: 1.34.x versions offered: 1.34.1-1.azl3, 1.34.10~rc.1-1.azl3, 1.34.10-1.azl3, 1.34.11-1.azl3",
			unknown:    "they offer no 1.34.x version of kubectl for x86_64 (0 versions in all)",
		},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			pkgbuild.Require(t, tc.tools...)
			host := snapshot(tc.hostPaths...)
			tmp := t.TempDir()
			marker := filepath.Join(tmp, "postinst-ran")
			extra := fixtureRepository(t, tc.format, tc.release, tmp, marker)
			m, err := New(tc.format, Options{ExtraArgs: extra, Retries: 1, Backoff: 100 * time.Millisecond, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			version := func(s string) pkgversion.Version { return pkgversion.MustParse(tc.format, s) }

			// The apt lists start empty, as on an image that removed them:
			// the first Fetch must run apt-get update by itself.
			t.Run("fetch", func(t *testing.T) {
				for _, tt := range tc.fetch {
					t.Run(tt.want+"_"+string(tt.arch), func(t *testing.T) {
						dir := filepath.Join(t.TempDir(), "opt", "kubelet", "downloads")
						p, err := Fetch(t.Context(), m, "kubelet", version(tt.want), tt.arch, dir)
						if err != nil {
							t.Fatal(err)
						}
						onlyEntry(t, dir, filepath.Base(p))
						got := tc.query(t, tmp, p)
						if want := "kubelet " + tt.want + " " + tt.arch.In(tc.format); got != want {
							t.Errorf("downloaded package is %q, want %q", got, want)
						}
					})
				}
			})

			if tc.format == platform.Deb {
				if lists, _ := filepath.Glob(filepath.Join(tmp, "lists", "*_Packages*")); len(lists) == 0 {
					t.Error("Fetch did not run apt-get update although the lists were empty")
				}
			}

			t.Run("versions", func(t *testing.T) {
				vs, err := m.Versions(t.Context(), "kubelet", platform.ARM64)
				if err != nil {
					t.Fatal(err)
				}
				if got := versionStrings(vs); strings.Join(got, " ") != tc.versions {
					t.Errorf("versions = %v, want %s", got, tc.versions)
				}
			})

			t.Run("not offered", func(t *testing.T) {
				dir := t.TempDir()
				_, err := Fetch(t.Context(), m, "kubelet", version("1.34.2-"+tc.release), platform.ARM64, dir)
				if !errors.Is(err, ErrVersionNotOffered) {
					t.Fatalf("err = %v, want ErrVersionNotOffered", err)
				}
				if err.Error() != tc.notOffered {
					t.Errorf("message\n got: %s\nwant: %s", err, tc.notOffered)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Errorf("%s holds %d files after a failed fetch", dir, len(entries))
				}
			})

			t.Run("unknown package", func(t *testing.T) {
				_, err := Fetch(t.Context(), m, "kubectl", version("1.34.1-"+tc.release), platform.AMD64, t.TempDir())
				if !errors.Is(err, ErrVersionNotOffered) || !strings.Contains(err.Error(), tc.unknown) {
					t.Errorf("err = %v", err)
				}
			})

			if _, err := os.Lstat(marker); err == nil {
				t.Error("a maintainer script ran: the package was installed, not only downloaded")
			}
			host.unchanged(t)
		})
	}
}
