// Package pkgbuild builds real .deb and .rpm packages with dpkg-deb and
// rpmbuild, and small real ELF binaries with the Go toolchain, for tests and
// benchmarks. It is never linked into reconcile itself.
package pkgbuild

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Spec describes a package to build.
type Spec struct {
	Name    string
	Version string // full package version, epoch allowed: "1:1.34.10-1.azl3"
	Arch    platform.Arch
	Files   map[string][]byte // "usr/bin/kubelet" → content, installed 0755
	Depends []string          // "iptables", "conntrack"
	// Compression: deb gzip|xz|zstd|none|bzip2; rpm gzip|xz|zstd (default gzip).
	Compression string
	// Postinst is the shell script body of the deb postinst and the rpm
	// %post scriptlet (where rpm expands % macros), which reconcile must
	// never run. Empty: one that prints a message and fails.
	Postinst string
}

// Tools lists the commands building needs for a format, for skip messages.
func Tools(f platform.Format) []string {
	if f == platform.RPM {
		return []string{"rpmbuild"}
	}
	return []string{"dpkg-deb"}
}

// Build writes the package into dir and returns its path.
func Build(f platform.Format, dir string, s Spec) (string, error) {
	if f == platform.RPM {
		return RPM(dir, s)
	}
	return Deb(dir, s)
}

// Deb builds s with dpkg-deb, with a postinst script (s.Postinst) that
// reconcile must never run.
func Deb(dir string, s Spec) (string, error) {
	v, err := pkgversion.Parse(platform.Deb, s.Version)
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(dir, ".debroot-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := writeFiles(work, s.Files); err != nil {
		return "", err
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: reconcile tests <tests@example.invalid>\nDescription: test package\n",
		s.Name, v, s.Arch.In(platform.Deb))
	if len(s.Depends) > 0 {
		control += "Depends: " + strings.Join(s.Depends, ", ") + "\n"
	}
	if err := writeFile(filepath.Join(work, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		return "", err
	}
	postinst := "#!/bin/sh\n" + s.script("echo postinst ran >&2\nexit 1\n")
	if err := writeFile(filepath.Join(work, "DEBIAN", "postinst"), []byte(postinst), 0o755); err != nil {
		return "", err
	}
	comp := s.Compression
	if comp == "" {
		comp = "gzip"
	}
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", s.Name, strings.ReplaceAll(v.String(), ":", "%3a"), s.Arch.In(platform.Deb)))
	if err := run("", "dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", work, out); err != nil {
		return "", err
	}
	return out, nil
}

// RPM builds s with rpmbuild, with a %post scriptlet (s.Postinst) that
// reconcile must never run.
func RPM(dir string, s Spec) (string, error) {
	v, err := pkgversion.Parse(platform.RPM, s.Version)
	if err != nil {
		return "", err
	}
	if v.Revision == "" {
		return "", errors.New("an rpm needs a release")
	}
	top, err := os.MkdirTemp(dir, ".rpmtop-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(top)
	src := filepath.Join(top, "SOURCES")
	if err := writeFiles(src, s.Files); err != nil {
		return "", err
	}
	var spec bytes.Buffer
	fmt.Fprintf(&spec, "Name: %s\nVersion: %s\nRelease: %s\nSummary: test package\nLicense: MIT\n", s.Name, v.Upstream, v.Revision)
	if v.Epoch != 0 {
		fmt.Fprintf(&spec, "Epoch: %d\n", v.Epoch)
	}
	for _, d := range s.Depends {
		fmt.Fprintf(&spec, "Requires: %s\n", d)
	}
	spec.WriteString("%description\ntest package\n%install\n")
	names := sortedNames(s.Files)
	for _, name := range names {
		fmt.Fprintf(&spec, "install -D -m 0755 %%{_sourcedir}/%s %%{buildroot}/%s\n", name, name)
	}
	spec.WriteString("%post\n" + s.script("echo post ran >&2\nexit 1\n") + "%files\n")
	for _, name := range names {
		fmt.Fprintf(&spec, "/%s\n", name)
	}
	specPath := filepath.Join(top, s.Name+".spec")
	if err := writeFile(specPath, spec.Bytes(), 0o644); err != nil {
		return "", err
	}
	payload := map[string]string{"": "w9.gzdio", "gzip": "w9.gzdio", "xz": "w6.xzdio", "zstd": "w3.zstdio"}[s.Compression]
	if payload == "" {
		return "", fmt.Errorf("rpm compression %q: expected gzip, xz or zstd", s.Compression)
	}
	rpmArch := s.Arch.In(platform.RPM)
	err = run(top, "rpmbuild", "-bb", "--quiet", "--target", rpmArch,
		"--define", "_topdir "+top,
		"--define", "_tmppath "+top, // not /var/tmp
		"--define", "_dbpath "+filepath.Join(top, "rpmdb"), // not ~/.rpmdb; rpmbuild ignores --dbpath
		"--define", "__os_install_post %{nil}",
		"--define", "__strip /bin/true",
		"--define", "_build_id_links none",
		"--define", "debug_package %{nil}",
		"--define", "_buildhost localhost",
		"--define", "_binary_payload "+payload,
		specPath)
	if err != nil {
		return "", err
	}
	built, err := filepath.Glob(filepath.Join(top, "RPMS", rpmArch, "*.rpm"))
	if err != nil || len(built) != 1 {
		return "", fmt.Errorf("rpmbuild produced %v", built)
	}
	out := filepath.Join(dir, filepath.Base(built[0]))
	return out, os.Rename(built[0], out)
}

// script is s.Postinst, or dflt when it is empty, ending in a newline.
func (s Spec) script(dflt string) string {
	body := cmp.Or(s.Postinst, dflt)
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return body
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func writeFiles(root string, files map[string][]byte) error {
	for name, data := range files {
		if err := writeFile(filepath.Join(root, filepath.FromSlash(name)), data, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

func run(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

var binaries sync.Map // "arch version" → []byte

// Binary returns a real static ELF for arch that prints
// "Kubernetes v<version>" whatever its arguments, like kubelet --version.
// It is built as Kubernetes builds its binaries: the version is set with
// -ldflags "-X k8s.io/component-base/version.gitVersion=v<version>", so
// the Go build info and the read-only data name it. No -trimpath: with it,
// the go command leaves -ldflags out of the build info, and the version is
// then read from the data alone (which TestReadData covers).
func Binary(arch platform.Arch, version string) ([]byte, error) {
	key := string(arch) + " " + version
	if b, ok := binaries.Load(key); ok {
		return b.([]byte), nil
	}
	dir, err := os.MkdirTemp("", "reconcile-fakebin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{
		"go.mod":             []byte("module k8s.io/component-base\n\ngo 1.22\n"),
		"main.go":            []byte("package main\n\nimport (\n\t\"os\"\n\n\t\"k8s.io/component-base/version\"\n)\n\nfunc main() { os.Stdout.WriteString(\"Kubernetes \" + version.Get() + \"\\n\") }\n"),
		"version/version.go": []byte("package version\n\nvar gitVersion = \"v0.0.0-master+$Format:%H$\"\n\n// Get is the version the build set.\nfunc Get() string { return gitVersion }\n"),
	}
	if err := writeFiles(dir, files); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X k8s.io/component-base/version.gitVersion=v"+version, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+string(arch), "GOFLAGS=-mod=mod", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building fake %s binary: %v\n%s", arch, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	binaries.Store(key, b)
	return b, nil
}
