package pkgmgr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// A package manager that hands back another package than the one asked for
// (a mirror serving the wrong file, a repository whose index lies) is caught
// by the package's own metadata; the error names both and nothing reaches
// the cache.
func TestFetchRefusesAnotherPackage(t *testing.T) {
	pkgbuild.Require(t, pkgbuild.Tools(platform.Deb)...)
	for _, tt := range []struct {
		name     string
		download func(dir string) error
		err      string
	}{
		{"other version", func(dir string) error { return buildInto(platform.Deb, dir, "1.34.10-1.1", "amd64") },
			"apt-get returned kubelet_1.34.10-1.1_amd64.deb for kubelet=1.34.1-1.1 (amd64): it is deb kubelet=1.34.10-1.1 (amd64); removed"},
		{"other arch", func(dir string) error { return buildInto(platform.Deb, dir, "1.34.1-1.1", "arm64") },
			"apt-get returned kubelet_1.34.1-1.1_arm64.deb for kubelet=1.34.1-1.1 (amd64): it is deb kubelet=1.34.1-1.1 (arm64); removed"},
		{"other package", func(dir string) error {
			_, err := pkgbuild.Deb(dir, pkgbuild.Spec{Name: "kubectl", Version: "1.34.1-1.1", Arch: platform.AMD64})
			return err
		}, "apt-get returned kubectl_1.34.1-1.1_amd64.deb for kubelet=1.34.1-1.1 (amd64): it is deb kubectl=1.34.1-1.1 (amd64); removed"},
		{"not a package", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "kubelet_1.34.1-1.1_amd64.deb"), []byte("<html>captive portal</html>"), 0o644)
		}, "apt-get returned kubelet_1.34.1-1.1_amd64.deb for kubelet=1.34.1-1.1 (amd64), which is not a package"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inner := aptFake(aptVersions)
			f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
				if c.sub() == "download" {
					return nil, tt.download(c.dir)
				}
				return inner.fn(ctx, c, n)
			}}
			m := newManager(t, platform.Deb, f, Options{})
			root := testRoot(t)
			_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, root, cacheDir)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v\nwant %q", err, tt.err)
			}
			if entries, _ := os.ReadDir(filepath.Join(root.Name(), cacheDir)); len(entries) != 0 {
				t.Errorf("the cache holds %v", entries)
			}
			if _, err := os.Lstat(f.of("download")[0].dir); err == nil {
				t.Error("the private download directory is left behind")
			}
		})
	}
}

// A user who can write in the root swaps the cache directory for a symbolic
// link out of it: the package is written through the root, so it does not
// follow the link, and nothing is written where it leads.
func TestFetchCacheSymlinkOutOfTheRoot(t *testing.T) {
	pkgbuild.Require(t, pkgbuild.Tools(platform.Deb)...)
	m := newManager(t, platform.Deb, aptFake(aptVersions), Options{})
	root := testRoot(t)
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root.Name(), "opt", "kubelet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root.Name(), "opt", "kubelet", "downloads")); err != nil {
		t.Fatal(err)
	}
	_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, root, cacheDir)
	if err == nil || !strings.Contains(err.Error(), "escapes") {
		t.Errorf("err = %v, want the path refused as escaping the root", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written outside the root: %v", entries)
	}
}

func TestNewestWithFakes(t *testing.T) {
	versions := []string{"1.34.1-1", "1.34.1-2", "1:1.34.0-9", "1.34.1~rc.1-7", "1.34.10-1", "1.34.11-1", "1.34.01-3"}
	for _, tt := range []struct {
		upstream string
		want     string
		err      string
	}{
		// 1.34.01 is 1.34.1 by dpkg's rules, and its revision 3 the newest.
		{"1.34.1", "1.34.01-3", ""},
		{"1.34.0", "1:1.34.0-9", ""},
		{"1.34.1~rc.1", "1.34.1~rc.1-7", ""},
		{"1.34.2", "", "kubelet=1.34.2 (amd64) is not offered by the apt-get repositories: 1.34.x versions offered: 1.34.1~rc.1-7, 1.34.1-1, 1.34.1-2, 1.34.10-1, 1.34.11-1, 1:1.34.0-9"},
		{"1.34.1-1", "", `"1.34.1-1" is not an upstream version`},
		{"1:1.34.1", "", `"1:1.34.1" is not an upstream version`},
		{"", "", `"" is not an upstream version`},
	} {
		t.Run(tt.upstream, func(t *testing.T) {
			f := aptFake(versions)
			m := newManager(t, platform.Deb, f, Options{})
			got, err := Newest(t.Context(), m, "kubelet", tt.upstream, platform.AMD64)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Errorf("Newest = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// With a root other than "/", apt reads a private apt.conf (APT_CONFIG)
// that points every directory into the root and reads no apt.conf.d; the
// refresh uses copies of the configured source lists, the testing lists
// only for a pre-release.
func TestAptCommandsForARoot(t *testing.T) {
	rootDir := t.TempDir()
	for name, content := range map[string]string{
		"etc/apt/sources.list.d/microsoft-prod.list": "deb [trusted=yes] file:/srv/prod ./\n",
		"etc/apt/sources.list.d/testing.list":        "deb [trusted=yes] file:/srv/testing ./\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rootDir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type seen struct {
		conf    string
		sources []string // content of each source list the refresh used
	}
	var updates []seen
	var confs []string
	inner := aptFake(aptVersions)
	f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
		if len(c.env) != 1 || !strings.HasPrefix(c.env[0], "APT_CONFIG=") {
			return nil, errors.New("no APT_CONFIG")
		}
		conf, err := os.ReadFile(strings.TrimPrefix(c.env[0], "APT_CONFIG="))
		if err != nil {
			return nil, err
		}
		confs = append(confs, string(conf))
		if c.sub() == "update" {
			s := seen{conf: string(conf)}
			for i, a := range c.args {
				if dir, ok := strings.CutPrefix(a, "Dir::Etc::SourceParts="); ok && c.args[i-1] == "-o" {
					files, _ := filepath.Glob(filepath.Join(dir, "*"))
					for _, file := range files {
						b, _ := os.ReadFile(file)
						s.sources = append(s.sources, filepath.Base(file)+": "+string(b))
					}
				}
			}
			updates = append(updates, s)
			return nil, nil
		}
		return inner.fn(ctx, c, n)
	}}
	m := newManager(t, platform.Deb, f, Options{
		Root:           rootDir,
		Sources:        []string{"/etc/apt/sources.list.d/microsoft-prod.list"},
		TestingSources: []string{"/etc/apt/sources.list.d/testing.list"},
	})
	u := m.(Updater)
	if err := u.Update(t.Context(), pkgversion.MustParse(platform.Deb, "1.34.1-1")); err != nil {
		t.Fatal(err)
	}
	if err := u.Update(t.Context(), pkgversion.MustParse(platform.Deb, "1.35.0~rc.1-1")); err != nil {
		t.Fatal(err)
	}
	if len(updates) != 2 {
		t.Fatalf("%d updates", len(updates))
	}
	if want := []string{"microsoft-prod.list: deb [trusted=yes] file:/srv/prod ./\n"}; !slices.Equal(updates[0].sources, want) {
		t.Errorf("refresh of a release used %q, want %q", updates[0].sources, want)
	}
	if want := []string{"microsoft-prod.list: deb [trusted=yes] file:/srv/prod ./\n", "testing.list: deb [trusted=yes] file:/srv/testing ./\n"}; !slices.Equal(updates[1].sources, want) {
		t.Errorf("refresh of a pre-release used %q, want %q", updates[1].sources, want)
	}
	for _, want := range []string{`Dir "` + rootDir + `/";`, `Dir::Etc::Parts "/dev/null";`, `Dir::Etc::Main "/dev/null";`} {
		if !strings.Contains(updates[0].conf, want) {
			t.Errorf("apt.conf lacks %s:\n%s", want, updates[0].conf)
		}
	}
	if fi, err := os.Stat(filepath.Join(rootDir, "var/lib/apt/lists/partial")); err != nil || !fi.IsDir() {
		t.Errorf("the root's lists/partial was not created: %v", err)
	}

	if _, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, testRoot(t), cacheDir); err != nil && !strings.Contains(err.Error(), "dpkg-deb") {
		// Without dpkg-deb the fake cannot build the package; the commands
		// it saw are what this test checks.
		t.Fatal(err)
	}
	for _, c := range f.calls {
		if len(c.env) != 1 {
			t.Errorf("%s %v ran without the root's configuration", c.name, c.args)
		}
	}
	dl := f.of("download")
	if len(dl) != 1 || !slices.Contains(dl[0].args, "APT::Sandbox::User=root") {
		t.Errorf("download = %v, want APT::Sandbox::User=root: the private directory is root's alone", dl)
	}
}

// On the node itself apt runs with its own configuration: no APT_CONFIG,
// no option but those for the refresh it is asked to restrict.
func TestAptCommandsOnTheNode(t *testing.T) {
	f := aptFake(aptVersions)
	m := newManager(t, platform.Deb, f, Options{})
	if err := m.(Updater).Update(t.Context(), pkgversion.MustParse(platform.Deb, "1.34.1-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Versions(t.Context(), "kubelet", platform.AMD64); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.calls {
		if len(c.env) != 0 {
			t.Errorf("%s %v: env %v", c.name, c.args, c.env)
		}
	}
	if got := f.of("update")[0].args; !slices.Equal(got, []string{"-q", "update"}) {
		t.Errorf("update args = %v", got)
	}
}

func TestDnfCommandsForARoot(t *testing.T) {
	rootDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootDir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootDir, "etc", "os-release"), []byte("ID=azurelinux\nVERSION_ID=\"3.0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var configs []string
	inner := dnfFake(rpmVersions)
	f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
		for _, a := range c.args {
			if p, ok := strings.CutPrefix(a, "--config="); ok {
				b, err := os.ReadFile(p)
				if err != nil {
					return nil, err
				}
				configs = append(configs, string(b))
			}
		}
		return inner.fn(ctx, c, n)
	}}
	m := newManager(t, platform.RPM, f, Options{Root: rootDir, Repos: []string{"azurelinux-official-base", "azurelinux-official-ms-oss"}})
	if _, err := m.Versions(t.Context(), "kubelet", platform.AMD64); err != nil {
		t.Fatal(err)
	}
	if err := m.(Updater).Update(t.Context(), pkgversion.MustParse(platform.RPM, "1.34.1-1.azl3")); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.calls {
		want := []string{"--installroot=" + rootDir, "--setopt=reposdir=" + filepath.Join(rootDir, "etc", "yum.repos.d"), "--releasever=3.0",
			"--repo=azurelinux-official-base", "--repo=azurelinux-official-ms-oss", "--disableplugin=generate_completion_cache"}
		for _, w := range want {
			if !slices.Contains(c.args, w) {
				t.Errorf("dnf %v lacks %s", c.args, w)
			}
		}
	}
	if len(configs) != 2 || configs[0] != "[main]\n" {
		t.Errorf("dnf.conf given = %q, want an empty [main] for each command", configs)
	}
}

func TestNewOptions(t *testing.T) {
	for _, tt := range []struct {
		format platform.Format
		opts   Options
		err    string
	}{
		{platform.Deb, Options{Root: "mnt/image"}, `root "mnt/image" is not an absolute path`},
		{platform.Deb, Options{Root: "/mnt/im\"age"}, "holds a quote"},
		{platform.Deb, Options{Repos: []string{"base"}}, "are for dnf; apt takes source list files"},
		{platform.RPM, Options{Sources: []string{"/etc/apt/sources.list"}}, "are for apt; dnf takes repository ids"},
		{"apk", Options{}, `no package manager for package format "apk"`},
	} {
		if _, err := New(tt.format, tt.opts); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("New(%s, %+v) = %v, want %q", tt.format, tt.opts, err, tt.err)
		}
	}
}

// fakeTools makes a directory holding executables of the given names, to be
// the whole PATH: New looks tools up, it never runs them.
func fakeTools(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNewPicksDnfThenTdnf(t *testing.T) {
	for _, tt := range []struct {
		tools []string
		want  string
	}{
		{[]string{"dnf", "tdnf"}, "dnf"},
		{[]string{"tdnf"}, "tdnf"},
		{nil, ""},
	} {
		t.Setenv("PATH", fakeTools(t, tt.tools...))
		m, err := New(platform.RPM, Options{})
		if tt.want == "" {
			if !errors.Is(err, ErrNoPackageManager) || !strings.Contains(err.Error(), "neither dnf nor tdnf is in PATH") {
				t.Errorf("tools %v: err = %v", tt.tools, err)
			}
			continue
		}
		if err != nil || m.Name() != tt.want {
			t.Errorf("tools %v: New = %v, %v; want %s", tt.tools, m, err, tt.want)
		}
	}
}

// tdnfFake answers "tdnf -j list available" from versions for both arches
// and an installed copy, and simulates the download by building the
// package into --downloaddir.
func tdnfFake(versions []string) *fake {
	return &fake{fn: func(_ context.Context, c call, _ int) ([]byte, error) {
		switch {
		case slices.Contains(c.args, "list"):
			var b strings.Builder
			b.WriteString(`[{"Name":"kubelet","Arch":"x86_64","Evr":"1.34.1-1.azl3","Repo":"@System"}`)
			for _, v := range versions {
				for _, arch := range []string{"x86_64", "aarch64"} {
					b.WriteString(`,{"Name":"kubelet","Arch":"` + arch + `","Evr":"` + v + `","Repo":"azurelinux-official-base"}`)
				}
			}
			b.WriteString(`,{"Name":"kubelet-dbg","Arch":"x86_64","Evr":"1.34.1-9.azl3","Repo":"azurelinux-official-base"}]`)
			return []byte(b.String()), nil
		case slices.Contains(c.args, "install"):
			var dest string
			for _, a := range c.args {
				if v, ok := strings.CutPrefix(a, "--downloaddir="); ok {
					dest = v
				}
			}
			_, evr, _ := strings.Cut(c.last(), "=")
			return nil, buildInto(platform.RPM, dest, evr, "x86_64")
		case slices.Contains(c.args, "makecache"):
			return nil, nil
		}
		return nil, errors.New("unexpected command")
	}}
}

// tdnf is not packaged for this build machine: these tests check the
// command lines it gets, with a fake runner.
func TestTdnf(t *testing.T) {
	// A PATH with tdnf and no dnf while New picks the manager; the real one
	// after, for the rpm tools that build what the fake tdnf "downloads".
	path := os.Getenv("PATH")
	pkgbuild.Require(t, pkgbuild.Tools(platform.RPM)...)
	t.Setenv("PATH", fakeTools(t, "tdnf"))
	rootDir := t.TempDir()
	f := tdnfFake([]string{"1.34.1-1.azl3", "1.34.1-2.azl3", "2:1.34.10-1.azl3"})
	m := newManager(t, platform.RPM, f, Options{Root: rootDir, Repos: []string{"azurelinux-official-base"}})
	if m.Name() != "tdnf" {
		t.Fatalf("manager %s", m.Name())
	}
	t.Setenv("PATH", path)
	vs, err := m.Versions(t.Context(), "kubelet", platform.ARM64)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(versionStrings(vs), " "); got != "1.34.1-1.azl3 1.34.1-2.azl3 2:1.34.10-1.azl3" {
		t.Errorf("versions = %s", got)
	}
	list := f.of("list")
	if len(list) != 1 {
		t.Fatalf("list calls %v", f.calls)
	}
	want := []string{"--installroot=" + rootDir, "--setopt=reposdir=" + filepath.Join(rootDir, "etc", "yum.repos.d"), "--repo=azurelinux-official-base", "-j", "list", "available", "kubelet"}
	for _, w := range want {
		if !slices.Contains(list[0].args, w) {
			t.Errorf("tdnf %v lacks %s", list[0].args, w)
		}
	}

	root := testRoot(t)
	rel, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.RPM, "1.34.1-2.azl3"), platform.AMD64, root, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if rel != "opt/kubelet/downloads/kubelet-1.34.1-2.azl3.x86_64.rpm" {
		t.Errorf("rel = %s", rel)
	}
	install := f.of("install")
	if len(install) != 1 {
		t.Fatalf("install calls %v", f.calls)
	}
	tail := install[0].args[len(install[0].args)-6:]
	if tail[0] != "install" || tail[1] != "-y" || tail[2] != "--downloadonly" || !strings.HasPrefix(tail[3], "--downloaddir=") ||
		tail[4] != "--nodeps" || tail[5] != "kubelet=1.34.1-2.azl3" {
		t.Errorf("tdnf download = %v", install[0].args)
	}
	// The installed copy is not a download source, and tdnf cannot be
	// told an architecture: the arm64 package it would not fetch is
	// refused rather than taken for the x86_64 one.
	_, err = Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.RPM, "1.34.1-2.azl3"), platform.ARM64, root, cacheDir)
	if err == nil || !strings.Contains(err.Error(), "it is rpm kubelet=1.34.1-2.azl3 (x86_64); removed") {
		t.Errorf("foreign arch: err = %v", err)
	}
}

func TestParseTdnfList(t *testing.T) {
	recs, bad, err := parseTdnfList([]byte(`[{"Name":"kubelet","Arch":"x86_64","Evr":"latest","Repo":"r"},{"Name":"kubelet","Arch":"x86_64","Evr":"1:1.34.1-1.azl3","Repo":"r"}]`), "kubelet", platform.AMD64)
	if err != nil || len(bad) != 1 || len(recs) != 1 || recs[0].spec != "kubelet=1:1.34.1-1.azl3" {
		t.Errorf("records %+v, bad %v, err %v", recs, bad, err)
	}
	if _, _, err := parseTdnfList([]byte("Error(1011) : No matching packages"), "kubelet", platform.AMD64); err == nil {
		t.Error("text accepted as JSON")
	}
}

// The tools' output is parsed: no input may panic, and what is returned is
// only the package and architecture asked for.
func FuzzParseToolOutput(f *testing.F) {
	f.Add([]byte(aptStanza("1.34.1-1.1", "amd64", 4)))
	f.Add(repoqueryLines("x86_64", "1.34.1-1.azl3"))
	f.Add([]byte(`[{"Name":"kubelet","Arch":"x86_64","Evr":"1.34.1-1.azl3","Repo":"r"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		apt, _ := parseAptShow(data, "kubelet", platform.AMD64)
		dnf, _ := parseRepoquery(data, "kubelet", platform.AMD64)
		tdnf, _, _ := parseTdnfList(data, "kubelet", platform.AMD64)
		for _, r := range slices.Concat(apt, dnf, tdnf) {
			if !strings.HasPrefix(r.spec, "kubelet") {
				t.Errorf("record %+v", r)
			}
		}
	})
}

// A TMPDIR other users can write (without the sticky bit) would let them
// swap the private directory for a link: Fetch refuses it before any
// command runs; a sticky one is fine.
func TestPrivateDirParent(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o777, false},
		{0o770, false},
		{0o755, true},
		{0o777 | os.ModeSticky, true},
	} {
		dir := filepath.Join(t.TempDir(), "tmp")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tt.mode); err != nil {
			t.Fatal(err)
		}
		t.Setenv("TMPDIR", dir)
		f := aptFake(aptVersions)
		m := newManager(t, platform.Deb, f, Options{})
		_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, testRoot(t), cacheDir)
		if !tt.ok {
			if err == nil || !strings.Contains(err.Error(), "other users could replace what is downloaded there") {
				t.Errorf("TMPDIR mode %s: err = %v", tt.mode, err)
			}
			if n := len(f.of("download")); n != 0 {
				t.Errorf("TMPDIR mode %s: %d downloads", tt.mode, n)
			}
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "dpkg-deb") {
			t.Errorf("TMPDIR mode %s: err = %v", tt.mode, err)
		}
	}
}

// Without configured sources a refresh is not restricted, also for a
// pre-release: the testing list is among all the lists.
func TestAptUpdateUnrestricted(t *testing.T) {
	f := aptFake(aptVersions)
	m := newManager(t, platform.Deb, f, Options{TestingSources: []string{"/etc/apt/sources.list.d/testing.list"}})
	if err := m.(Updater).Update(t.Context(), pkgversion.MustParse(platform.Deb, "1.35.0~rc.1-1")); err != nil {
		t.Fatal(err)
	}
	if got := f.of("update")[0].args; !slices.Equal(got, []string{"-q", "update"}) {
		t.Errorf("update args = %v", got)
	}
}
