package pkgfile

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Real packages, built once per test binary by dpkg-deb and rpmbuild.

var fixtureDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "pkgfile-fixtures-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

type fixture struct {
	path    string
	format  platform.Format
	comp    string
	arch    platform.Arch
	kubelet []byte // usr/bin/kubelet
	helper  []byte // usr/local/bin/helper
	label   string // tells fixtures of the same compression apart
}

func (f fixture) String() string {
	return fmt.Sprintf("%s-%s-%s", f.format, cmpOr(f.label, f.comp), f.arch)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var (
	fixturesOnce sync.Once
	fixtureList  []fixture
	fixtureErr   error
)

// errMissingTool marks a fixture error that is the machine's fault.
var errMissingTool = errors.New("tool not installed")

// needTool fails the test under CI=true and skips it otherwise.
func needTool(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, errMissingTool) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v (set CI=true to make this a failure)", err)
	}
	t.Fatal(err)
}

func lookTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%w: %s", errMissingTool, n)
		}
	}
	return nil
}

// realFixtures returns every real package: debs in gzip, xz, zstd, none and
// bzip2 (dpkg-deb 1.21 cannot write bzip2, so that one is the gzip deb
// re-packed), rpms in gzip, xz, zstd, bzip2 and lzma, each for amd64 and
// arm64 with different binary content; and an uncompressed rpm.
func realFixtures(t testing.TB) []fixture {
	t.Helper()
	fixturesOnce.Do(func() { fixtureList, fixtureErr = buildFixtures(fixtureDir) })
	needTool(t, fixtureErr)
	return fixtureList
}

func fixtureFor(t testing.TB, format platform.Format, comp string, arch platform.Arch) fixture {
	for _, f := range realFixtures(t) {
		if f.format == format && f.comp == comp && f.arch == arch {
			return f
		}
	}
	t.Fatalf("no fixture %s %s %s", format, comp, arch)
	return fixture{}
}

func run(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func buildFixtures(dir string) ([]fixture, error) {
	if err := lookTools("dpkg-deb", "rpmbuild", "ar", "gzip", "bzip2", "xz"); err != nil {
		return nil, err
	}
	var out []fixture
	for i, arch := range []platform.Arch{platform.AMD64, platform.ARM64} {
		kubelet := randomBytes(uint64(2*i+1), 6000+i)
		helper := randomBytes(uint64(2*i+2), 3001)
		debs, err := buildDebs(dir, arch, kubelet, helper)
		if err != nil {
			return nil, err
		}
		rpms, err := buildRPMs(dir, arch, kubelet, helper)
		if err != nil {
			return nil, err
		}
		out = append(append(out, debs...), rpms...)
	}
	return out, nil
}

const debControl = `Package: kubelet
Version: 1:1.34.10-1.1
Architecture: %s
Maintainer: Test <test@example.com>
Pre-Depends: dpkg (>= 1.17.5)
Depends: iptables (>= 1.4.21),
 kubernetes-cni (>= 1.2.0) | cni-plugins
Description: test kubelet
 multi-line description.
`

func buildDebs(dir string, arch platform.Arch, kubelet, helper []byte) ([]fixture, error) {
	root := filepath.Join(dir, "debroot-"+string(arch))
	files := map[string][]byte{
		"usr/bin/kubelet":                  kubelet,
		"usr/local/bin/helper":             helper,
		"usr/share/doc/kubelet/copyright":  []byte("test\n"),
		"DEBIAN/postinst":                  []byte("#!/bin/sh\necho configured\n"),
		"DEBIAN/control":                   fmt.Appendf(nil, debControl, arch),
		"usr/share/kubelet/odd name.txt":   []byte("spaces in names\n"),
		"usr/share/kubelet/README-not-bin": []byte("x"),
	}
	var sums strings.Builder
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if strings.Contains(name, "bin/") || strings.HasSuffix(name, "postinst") {
			mode = 0o755
		}
		if err := os.WriteFile(p, body, mode); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(name, "DEBIAN/") {
			s := md5.Sum(body)
			fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(s[:]), name)
		}
	}
	if err := os.Symlink("kubelet", filepath.Join(root, "usr/bin/kubelet-link")); err != nil {
		return nil, err
	}
	var out []fixture
	for _, comp := range []string{"gzip", "xz", "zstd", "none"} {
		// Real packages carry md5sums (dh_md5sums); leave it out of one
		// so the no-digest path is covered too.
		sumsPath := filepath.Join(root, "DEBIAN/md5sums")
		os.Remove(sumsPath)
		if comp != "none" {
			if err := os.WriteFile(sumsPath, []byte(sums.String()), 0o644); err != nil {
				return nil, err
			}
		}
		pkg := filepath.Join(dir, fmt.Sprintf("kubelet_%s_%s.deb", comp, arch))
		if _, err := run(dir, "dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", root, pkg); err != nil {
			return nil, err
		}
		out = append(out, fixture{path: pkg, format: platform.Deb, comp: comp, arch: arch, kubelet: kubelet, helper: helper})
	}
	bz, err := rewrapDeb(dir, out[0].path, "bzip2", ".bz2", "bzip2", "-9", "data.tar")
	if err != nil {
		return nil, err
	}
	f := out[0]
	f.path, f.comp = bz, "bzip2"
	out = append(out, f)
	// What dpkg-deb's multi-threaded xz writes for a large package: many
	// blocks, here 1 KiB each so that a small package has them too.
	xzb, err := rewrapDeb(dir, out[0].path, "xzblocks", ".xz", "xz", "-T1", "--block-size=1KiB", "data.tar")
	if err != nil {
		return nil, err
	}
	f.path, f.comp, f.label = xzb, "xz", "xz-blocks"
	return append(out, f), nil
}

// rewrapDeb re-packs a gzip deb's data.tar with a compression tool,
// keeping everything else byte for byte.
func rewrapDeb(dir, gzDeb, label, suffix string, compress ...string) (string, error) {
	x := filepath.Join(dir, "rewrap-"+label+"-"+filepath.Base(gzDeb))
	if err := os.MkdirAll(x, 0o755); err != nil {
		return "", err
	}
	if _, err := run(x, "ar", "x", gzDeb); err != nil {
		return "", err
	}
	if _, err := run(x, "gzip", "-d", "data.tar.gz"); err != nil {
		return "", err
	}
	if _, err := run(x, compress[0], compress[1:]...); err != nil {
		return "", err
	}
	var m []pkgtest.ArMember
	for _, name := range []string{"debian-binary", "control.tar.gz", "data.tar" + suffix} {
		b, err := os.ReadFile(filepath.Join(x, name))
		if err != nil {
			return "", err
		}
		m = append(m, pkgtest.ArMember{Name: name, Body: b})
	}
	out := strings.TrimSuffix(gzDeb, ".deb") + "_" + label + ".deb"
	out = strings.Replace(out, "_gzip_", "_", 1)
	return out, os.WriteFile(out, pkgtest.Ar(m), 0o644)
}

const rpmSpec = `Name: kubelet
Epoch: 1
Version: 1.34.10
Release: 1.azl3
Summary: test kubelet
License: MIT
Requires: iptables >= 1.4
Requires: kubernetes-cni

%description
test

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/local/bin %{buildroot}/usr/share/doc/kubelet
install -m 0755 %{_sourcedir}/kubelet %{buildroot}/usr/bin/kubelet
install -m 0755 %{_sourcedir}/helper %{buildroot}/usr/local/bin/helper
echo test > %{buildroot}/usr/share/doc/kubelet/copyright
ln -s kubelet %{buildroot}/usr/bin/kubelet-link

%post
echo installed

%files
/usr/bin/kubelet
/usr/bin/kubelet-link
/usr/local/bin/helper
/usr/share/doc/kubelet/copyright
`

var rpmPayloads = map[string]string{"none": "w.ufdio", "gzip": "w9.gzdio", "xz": "w6.xzdio", "zstd": "w19.zstdio", "bzip2": "w9.bzdio", "lzma": "w6.lzdio"}

func buildRPMs(dir string, arch platform.Arch, kubelet, helper []byte) ([]fixture, error) {
	src := filepath.Join(dir, "rpmsrc-"+string(arch))
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "kubelet"), kubelet, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "helper"), helper, 0o755); err != nil {
		return nil, err
	}
	spec := filepath.Join(src, "kubelet.spec")
	if err := os.WriteFile(spec, []byte(rpmSpec), 0o644); err != nil {
		return nil, err
	}
	var out []fixture
	for _, comp := range []string{"gzip", "xz", "zstd", "bzip2", "lzma", "none"} {
		top := filepath.Join(dir, "rpmtop-"+comp+"-"+string(arch))
		_, err := run(src, "rpmbuild", "-bb", "--quiet", "--target", arch.In(platform.RPM),
			"--define", "_topdir "+top,
			"--define", "_sourcedir "+src,
			"--define", "_binary_payload "+rpmPayloads[comp],
			"--define", "__strip /bin/true",
			"--define", "_build_id_links none",
			"--define", "debug_package %{nil}",
			"--define", "__os_install_post %{nil}",
			spec)
		if err != nil {
			return nil, err
		}
		built, _ := filepath.Glob(filepath.Join(top, "RPMS", "*", "*.rpm"))
		if len(built) != 1 {
			return nil, fmt.Errorf("rpmbuild made %d packages in %s", len(built), top)
		}
		out = append(out, fixture{path: built[0], format: platform.RPM, comp: comp, arch: arch, kubelet: kubelet, helper: helper})
	}
	return out, nil
}

// referenceExtract gets path out of a package with the distro's own tools.
func referenceExtract(t testing.TB, f fixture, path string) []byte {
	t.Helper()
	dir := t.TempDir()
	switch f.format {
	case platform.Deb:
		if _, err := run(dir, "dpkg-deb", "-x", f.path, dir); err != nil {
			t.Fatal(err)
		}
	case platform.RPM:
		needTool(t, lookTools("rpm2cpio", "cpio", "sh"))
		// --no-absolute-filenames: cpio would otherwise write "/..." names
		// onto the host.
		cmd := fmt.Sprintf("rpm2cpio '%s' | cpio -idm --quiet --no-absolute-filenames", f.path)
		if _, err := run(dir, "sh", "-c", cmd); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
