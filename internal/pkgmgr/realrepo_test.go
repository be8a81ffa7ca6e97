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

// fixturePackage is one package of the test repositories.
type fixturePackage struct {
	upstream string
	revision int
	arches   []platform.Arch
}

var (
	both    = platform.Arches
	amdOnly = []platform.Arch{platform.AMD64}
	armOnly = []platform.Arch{platform.ARM64}
)

// fixturePackages: 1.34.1 must never select 1.34.10, 1.34.10 never its
// release candidate, 1.33.5 is on another minor line, and the newest
// revision of 1.34.1 is 2 on amd64 but 3 on arm64 (built for arm64 only).
var fixturePackages = []fixturePackage{
	{"1.33.5", 1, both},
	{"1.34.1", 1, both},
	{"1.34.1", 2, amdOnly},
	{"1.34.1", 3, armOnly},
	{"1.34.1~rc.1", 9, amdOnly},
	{"1.34.10~rc.1", 1, both},
	{"1.34.10", 1, both},
	{"1.34.11", 1, both},
}

// buildFixtures builds tiny kubelet packages of fixturePackages in format,
// each with a postinst (%post) that touches marker, into dir.
func buildFixtures(t *testing.T, format platform.Format, suffix, dir, marker string) []string {
	t.Helper()
	var built []string
	for _, fp := range fixturePackages {
		v := fp.upstream + "-" + string(rune('0'+fp.revision)) + suffix
		for _, arch := range fp.arches {
			p, err := pkgbuild.Build(format, dir, pkgbuild.Spec{
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
	return built
}

// TestRealRepository runs each package manager on a test root whose own
// configuration names a local repository of real packages, and checks that
// nothing of the host's package manager state is read or written.
func TestRealRepository(t *testing.T) {
	type fetchCase struct {
		want string
		arch platform.Arch
	}
	for _, tc := range []struct {
		format    platform.Format
		tools     []string
		hostPaths []string
		suffix    string // of every fixture revision
		// setup makes the repositories of root and returns the options
		// that restrict a fetch to the local one.
		setup func(t *testing.T, tmp, root string, pkgs []string) Options
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
			hostPaths: pkgbuild.AptHostPaths(),
			setup: func(t *testing.T, tmp, root string, pkgs []string) Options {
				list, err := pkgbuild.AptRootRepo(filepath.Join(tmp, "repo"), root, "local.list", pkgs...)
				if err != nil {
					t.Fatal(err)
				}
				// Another source of the root, which a refresh restricted
				// to local.list must leave alone.
				if _, err := pkgbuild.AptRootRepo(filepath.Join(tmp, "other"), root, "other.list"); err != nil {
					t.Fatal(err)
				}
				return Options{Sources: []string{list}}
			},
			query: func(t *testing.T, tmp, p string) string {
				return runTool(t, tmp, "dpkg-deb", "--showformat=${Package} ${Version} ${Architecture}", "--show", p)
			},
			fetch: []fetchCase{
				{"1.34.1-1", platform.AMD64},
				{"1.34.10-1", platform.AMD64},
				{"1.34.10~rc.1-1", platform.AMD64},
				{"1.34.1-3", platform.ARM64},
				{"1.34.11-1", platform.ARM64},
			},
			versions:   "1.33.5-1 1.34.1-1 1.34.1-3 1.34.10~rc.1-1 1.34.10-1 1.34.11-1",
			notOffered: "kubelet=1.34.2-1 (arm64) is not offered by the apt-get repositories: 1.34.x versions offered: 1.34.1-1, 1.34.1-3, 1.34.10~rc.1-1, 1.34.10-1, 1.34.11-1",
			unknown:    "they offer no 1.34.x version of kubectl for amd64 (0 versions in all)",
		},
		{
			format:    platform.RPM,
			tools:     []string{"dnf", "rpmbuild", "createrepo_c", "rpm"},
			hostPaths: pkgbuild.DnfHostPaths(),
			suffix:    ".azl3",
			setup: func(t *testing.T, tmp, root string, pkgs []string) Options {
				if err := pkgbuild.DnfRootRepo(filepath.Join(tmp, "repo"), root, "local", pkgs...); err != nil {
					t.Fatal(err)
				}
				// A repository that cannot be loaded: dnf fails unless the
				// fetch is restricted to "local".
				broken := "[broken]\nname=broken\nbaseurl=file://" + filepath.Join(tmp, "missing") + "\nenabled=1\ngpgcheck=0\n"
				if err := os.WriteFile(filepath.Join(root, "etc", "yum.repos.d", "broken.repo"), []byte(broken), 0o644); err != nil {
					t.Fatal(err)
				}
				return Options{Repos: []string{"local"}}
			},
			query: func(t *testing.T, tmp, p string) string {
				return runTool(t, tmp, "rpm", "--define", "_dbpath "+filepath.Join(tmp, "rpmdb"), "-qp", "--nosignature", "--nodigest",
					"--queryformat", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", p)
			},
			fetch: []fetchCase{
				{"1.34.1-1.azl3", platform.AMD64},
				{"1.34.10-1.azl3", platform.AMD64},
				{"1.34.10~rc.1-1.azl3", platform.AMD64},
				{"1.34.1-3.azl3", platform.ARM64},
				{"1.34.10-1.azl3", platform.ARM64},
			},
			versions:   "1.33.5-1.azl3 1.34.1-1.azl3 1.34.1-3.azl3 1.34.10~rc.1-1.azl3 1.34.10-1.azl3 1.34.11-1.azl3",
			notOffered: "kubelet=1.34.2-1.azl3 (aarch64) is not offered by the dnf repositories: 1.34.x versions offered: 1.34.1-1.azl3, 1.34.1-3.azl3, 1.34.10~rc.1-1.azl3, 1.34.10-1.azl3, 1.34.11-1.azl3",
			unknown:    "they offer no 1.34.x version of kubectl for x86_64 (0 versions in all)",
		},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			pkgbuild.Require(t, tc.tools...)
			host := pkgbuild.Snapshot(tc.hostPaths...)
			tmp := t.TempDir()
			// The private directories go here, so the test can see that
			// none is left behind.
			private := filepath.Join(tmp, "private")
			if err := os.Mkdir(private, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("TMPDIR", private)
			marker := filepath.Join(tmp, "postinst-ran")
			build := filepath.Join(tmp, "build")
			if err := os.Mkdir(build, 0o755); err != nil {
				t.Fatal(err)
			}
			pkgs := buildFixtures(t, tc.format, tc.suffix, build, marker)
			rootDir := filepath.Join(tmp, "root")
			opts := tc.setup(t, tmp, rootDir, pkgs)
			opts.Root, opts.Retries, opts.Backoff, opts.Logger = rootDir, 1, 100*time.Millisecond, testLogger(t)
			m, err := New(tc.format, opts)
			if err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(rootDir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			version := func(s string) pkgversion.Version { return pkgversion.MustParse(tc.format, s) }

			// The root's apt lists start empty, as on an image that removed
			// them: the first Fetch must run apt-get update by itself.
			t.Run("fetch", func(t *testing.T) {
				for _, tt := range tc.fetch {
					t.Run(tt.want+"_"+string(tt.arch), func(t *testing.T) {
						cache := "/opt/kubelet/downloads/" + strings.ReplaceAll(tt.want, "~", "_") + "/" + string(tt.arch)
						rel, err := Fetch(t.Context(), m, "kubelet", version(tt.want), tt.arch, root, cache)
						if err != nil {
							t.Fatal(err)
						}
						onlyEntry(t, filepath.Join(rootDir, cache), filepath.Base(rel))
						got := tc.query(t, tmp, filepath.Join(rootDir, rel))
						if want := "kubelet " + tt.want + " " + tt.arch.In(tc.format); got != want {
							t.Errorf("downloaded package is %q, want %q", got, want)
						}
					})
				}
			})

			if tc.format == platform.Deb {
				lists, _ := filepath.Glob(filepath.Join(rootDir, "var/lib/apt/lists", "*_Packages*"))
				if len(lists) != 1 || !strings.Contains(lists[0], "_repo_") {
					t.Errorf("root's apt lists = %q, want the local repository's alone: the refresh is restricted to its source list", lists)
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

			t.Run("newest", func(t *testing.T) {
				for _, tt := range []struct {
					upstream string
					arch     platform.Arch
					want     string
				}{
					{"1.34.1", platform.AMD64, "1.34.1-2" + tc.suffix},
					{"1.34.1", platform.ARM64, "1.34.1-3" + tc.suffix},
					{"1.34.10", platform.AMD64, "1.34.10-1" + tc.suffix},
					{"1.34.1~rc.1", platform.AMD64, "1.34.1~rc.1-9" + tc.suffix},
				} {
					got, err := Newest(t.Context(), m, "kubelet", tt.upstream, tt.arch)
					if err != nil || got.String() != tt.want {
						t.Errorf("Newest(%s, %s) = %v, %v; want %s", tt.upstream, tt.arch, got, err, tt.want)
					}
				}
				_, err := Newest(t.Context(), m, "kubelet", "1.34.2", platform.AMD64)
				if !errors.Is(err, ErrVersionNotOffered) || !strings.Contains(err.Error(), "1.34.x versions offered: 1.34.1~rc.1-9"+tc.suffix) {
					t.Errorf("Newest(1.34.2) = %v", err)
				}
			})

			t.Run("not offered", func(t *testing.T) {
				_, err := Fetch(t.Context(), m, "kubelet", version("1.34.2-1"+tc.suffix), platform.ARM64, root, "/opt/missing")
				if !errors.Is(err, ErrVersionNotOffered) {
					t.Fatalf("err = %v, want ErrVersionNotOffered", err)
				}
				if err.Error() != tc.notOffered {
					t.Errorf("message\n got: %s\nwant: %s", err, tc.notOffered)
				}
				if _, err := os.Lstat(filepath.Join(rootDir, "opt", "missing")); err == nil {
					t.Error("a failed fetch created the cache directory")
				}
			})

			t.Run("unknown package", func(t *testing.T) {
				_, err := Fetch(t.Context(), m, "kubectl", version("1.34.1-1"+tc.suffix), platform.AMD64, root, cacheDir)
				if !errors.Is(err, ErrVersionNotOffered) || !strings.Contains(err.Error(), tc.unknown) {
					t.Errorf("err = %v", err)
				}
			})

			if _, err := os.Lstat(marker); err == nil {
				t.Error("a maintainer script ran: the package was installed, not only downloaded")
			}
			if left, _ := os.ReadDir(private); len(left) != 0 {
				t.Errorf("private directories left behind: %v", left)
			}
			host.Unchanged(t)
		})
	}
}
