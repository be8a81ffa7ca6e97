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

const kubeletSpec = `Name: kubelet
Version: %{kver}
Release: 1.azl3
Summary: test kubelet
License: MIT
%description
test kubelet
%install
mkdir -p %{buildroot}/usr/bin
echo "kubelet %{kver}-1.azl3 %{_target_cpu}" > %{buildroot}/usr/bin/kubelet
chmod 755 %{buildroot}/usr/bin/kubelet
%post
touch %{marker}
%files
/usr/bin/kubelet
`

// dnfRepository builds an rpm-md repository of tiny kubelet packages for
// x86_64 and aarch64 and returns the ExtraArgs that point dnf at it alone and
// keep every file dnf writes under tmp.
func dnfRepository(t *testing.T, tmp, postMarker string) []string {
	t.Helper()
	top := filepath.Join(tmp, "rpmbuild")
	spec := filepath.Join(top, "SPECS", "kubelet.spec")
	writeFile(t, spec, kubeletSpec, 0o644)
	repo := filepath.Join(tmp, "repo")
	for _, v := range fixtureVersions {
		for _, arch := range []string{"x86_64", "aarch64"} {
			runTool(t, tmp, "rpmbuild", "-bb", "--quiet", "--target", arch,
				"--define", "_topdir "+top,
				"--define", "_rpmdir "+repo,
				"--define", "_tmppath "+filepath.Join(tmp, "rpmtmp"), // not /var/tmp
				"--define", "_dbpath "+filepath.Join(tmp, "rpmdb"), // not ~/.rpmdb; rpmbuild ignores --dbpath
				"--define", "__strip /bin/true",
				"--define", "__os_install_post %{nil}",
				"--define", "_build_id_links none",
				"--define", "_binary_payload w1.gzdio",
				"--define", "kver "+v,
				"--define", "marker "+postMarker,
				spec)
		}
	}
	runTool(t, tmp, "createrepo_c", "--quiet", repo)
	return []string{
		"--installroot=" + filepath.Join(tmp, "installroot"),
		"--releasever=3.0",
		"--setopt=reposdir=/dev/null",
		"--setopt=cachedir=" + filepath.Join(tmp, "dnfcache"),
		"--repofrompath=local,file://" + repo,
		"--repo=local",
		"--nogpgcheck",
		// This plugin writes /var/cache/dnf/packages.db whatever the options.
		"--disableplugin=generate_completion_cache",
	}
}

func TestDNFRealRepository(t *testing.T) {
	requireTools(t, "dnf", "rpmbuild", "createrepo_c", "rpm")
	host := snapshot(dnfHostPaths()...)
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "rpmtmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(tmp, "post-ran")
	extra := dnfRepository(t, tmp, marker)
	m, err := New(platform.RPM, Options{ExtraArgs: extra, Retries: 1, Backoff: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rpmv := func(s string) pkgversion.Version { return pkgversion.MustParse(platform.RPM, s) }

	t.Run("fetch", func(t *testing.T) {
		for _, tt := range []struct {
			want string
			arch platform.Arch
		}{
			{"1.34.1-1.azl3", platform.AMD64},
			{"1.34.10-1.azl3", platform.AMD64},
			{"1.34.10~rc.1-1.azl3", platform.AMD64},
			{"1.34.1-1.azl3", platform.ARM64},
			{"1.34.10-1.azl3", platform.ARM64},
		} {
			t.Run(tt.want+"_"+string(tt.arch), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "opt", "kubelet", "downloads")
				p, err := Fetch(t.Context(), m, "kubelet", rpmv(tt.want), tt.arch, dir)
				if err != nil {
					t.Fatal(err)
				}
				onlyEntry(t, dir, filepath.Base(p))
				got := runTool(t, tmp, "rpm", "--define", "_dbpath "+filepath.Join(tmp, "rpmdb"), "-qp", "--nosignature", "--nodigest",
					"--queryformat", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", p)
				if want := "kubelet " + tt.want + " " + tt.arch.In(platform.RPM); got != want {
					t.Errorf("downloaded package is %q, want %q", got, want)
				}
			})
		}
	})

	t.Run("versions", func(t *testing.T) {
		vs, err := m.Versions(t.Context(), "kubelet", platform.ARM64)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.String())
		}
		if want := "1.33.5-1.azl3 1.34.1-1.azl3 1.34.10~rc.1-1.azl3 1.34.10-1.azl3 1.34.11-1.azl3"; strings.Join(got, " ") != want {
			t.Errorf("versions = %v, want %s", got, want)
		}
	})

	t.Run("not offered", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Fetch(t.Context(), m, "kubelet", rpmv("1.34.2-1.azl3"), platform.ARM64, dir)
		if !errors.Is(err, ErrVersionNotOffered) {
			t.Fatalf("err = %v, want ErrVersionNotOffered", err)
		}
		want := "kubelet=1.34.2-1.azl3 (aarch64) is not offered by the dnf repositories: 1.34.x versions offered: 1.34.1-1.azl3, 1.34.10~rc.1-1.azl3, 1.34.10-1.azl3, 1.34.11-1.azl3"
		if err.Error() != want {
			t.Errorf("message\n got: %s\nwant: %s", err, want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s holds %d files after a failed fetch", dir, len(entries))
		}
	})

	t.Run("unknown package", func(t *testing.T) {
		_, err := Fetch(t.Context(), m, "kubectl", rpmv("1.34.1-1.azl3"), platform.AMD64, t.TempDir())
		if !errors.Is(err, ErrVersionNotOffered) || !strings.Contains(err.Error(), "they offer no 1.34.x version of kubectl for x86_64 (0 versions in all)") {
			t.Errorf("err = %v", err)
		}
	})

	if _, err := os.Lstat(marker); err == nil {
		t.Error("a scriptlet ran: the package was installed, not only downloaded")
	}
	host.unchanged(t)
}
