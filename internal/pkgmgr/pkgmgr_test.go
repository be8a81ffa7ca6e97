package pkgmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// call is one command a fake runner saw.
type call struct {
	dir, name string
	env       []string
	args      []string
}

// sub is the subcommand: the first argument that is not an option or an
// option's value.
func (c call) sub() string {
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		if a == "-o" {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func (c call) last() string { return c.args[len(c.args)-1] }

// fake is a scripted Runner that records its calls.
type fake struct {
	mu    sync.Mutex
	calls []call
	fn    func(ctx context.Context, c call, n int) ([]byte, error) // n: calls of this subcommand so far, from 1
}

func (f *fake) Run(ctx context.Context, cmd Command) ([]byte, error) {
	c := call{dir: cmd.Dir, name: cmd.Name, env: cmd.Env, args: cmd.Args}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	n := len(f.of(c.sub()))
	f.mu.Unlock()
	return f.fn(ctx, c, n)
}

// of returns the calls of one subcommand; the caller holds mu or the test is
// past the calls.
func (f *fake) of(sub string) []call {
	var out []call
	for _, c := range f.calls {
		if c.sub() == sub {
			out = append(out, c)
		}
	}
	return out
}

func failure(c call, output string) error {
	return &CommandError{Cmd: append([]string{c.name}, c.args...), Output: output, Err: errors.New("exit status 100")}
}

func aptStanza(version, arch string, size int) string {
	return fmt.Sprintf("Package: kubelet\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@example.com>\n"+
		"Filename: pool/main/k/kubelet/kubelet_%s_%s.deb\nSize: %d\nDescription: node agent\n Homepage: not a field\n .\n\n",
		version, arch, strings.ReplaceAll(version, ":", "%3a"), arch, size)
}

// aptRepo is apt-cache show output for the versions asked for, for arch only
// (as apt-cache show name:arch prints it).
func aptRepo(arch string, versions ...string) []byte {
	var b strings.Builder
	for _, v := range versions {
		b.WriteString(aptStanza(v, arch, 0)) // size unknown: the fakes build real packages
	}
	return []byte(b.String())
}

var aptVersions = []string{"1.33.5-1.1", "1.34.1-1.1", "1.34.10-1.1", "1.34.10~rc.1-1.1", "1.34.11-1.1"}

// aptFake answers apt-cache show from versions and simulates apt-get
// download by writing the file apt would write.
func aptFake(versions []string) *fake {
	return &fake{fn: func(_ context.Context, c call, _ int) ([]byte, error) {
		switch c.sub() {
		case "show":
			arch := c.last()[strings.IndexByte(c.last(), ':')+1:]
			return aptRepo(arch, versions...), nil
		case "download":
			spec := c.last()
			nameArch, ver, _ := strings.Cut(spec, "=")
			_, arch, _ := strings.Cut(nameArch, ":")
			return nil, buildInto(platform.Deb, c.dir, ver, arch)
		case "update":
			return nil, nil
		}
		return nil, fmt.Errorf("unexpected command %v", c)
	}}
}

func repoqueryLines(arch string, evrs ...string) []byte {
	var b strings.Builder
	for _, evr := range evrs {
		epoch, vr, ok := strings.Cut(evr, ":")
		if !ok {
			epoch, vr = "0", evr
		}
		v, r, _ := strings.Cut(vr, "-")
		fmt.Fprintf(&b, "kubelet\t%s\t%s\t%s\t%s\tPackages/k/kubelet-%s-%s.%s.rpm\t0\n", epoch, v, r, arch, v, r, arch)
	}
	return []byte(b.String())
}

var rpmVersions = []string{"1.33.5-1.azl3", "1.34.1-1.azl3", "1.34.10-1.azl3", "1.34.10~rc.1-1.azl3", "1.34.11-1.azl3"}

func dnfFake(versions []string) *fake {
	return &fake{fn: func(_ context.Context, c call, _ int) ([]byte, error) {
		switch c.sub() {
		case "repoquery":
			var arch string
			for _, a := range c.args {
				if v, ok := strings.CutPrefix(a, "--arch="); ok {
					arch = v
				}
			}
			return repoqueryLines(arch, versions...), nil
		case "download":
			var dest string
			for _, a := range c.args {
				if v, ok := strings.CutPrefix(a, "--destdir="); ok {
					dest = v
				}
			}
			// kubelet-0:1.34.1-1.azl3.x86_64
			epoch, vra, _ := strings.Cut(strings.TrimPrefix(c.last(), "kubelet-"), ":")
			dot := strings.LastIndexByte(vra, '.')
			evr := vra[:dot]
			if epoch != "0" {
				evr = epoch + ":" + evr
			}
			return nil, buildInto(platform.RPM, dest, evr, vra[dot+1:])
		case "makecache":
			return nil, nil
		}
		return nil, fmt.Errorf("unexpected command %v", c)
	}}
}

// buildInto builds a real kubelet package into dir, as a package manager's
// download would leave it.
func buildInto(format platform.Format, dir, version, arch string) error {
	a, err := platform.ParseArch(arch)
	if err != nil {
		return err
	}
	_, err = pkgbuild.Build(format, dir, pkgbuild.Spec{Name: "kubelet", Version: version, Arch: a,
		Files: map[string][]byte{"usr/bin/kubelet": []byte("kubelet " + version + "\n")}})
	return err
}

// testRoot is a temporary --root.
func testRoot(t *testing.T) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

const cacheDir = "/opt/kubelet/downloads"

func newManager(t *testing.T, format platform.Format, r Runner, opts Options) Manager {
	t.Helper()
	opts.Runner = r
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	m, err := New(format, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFetchPicksTheExactVersionAndArch(t *testing.T) {
	tests := []struct {
		format   platform.Format
		want     string
		arch     platform.Arch
		spec     string // what the download command must be given
		wantFile string
	}{
		{platform.Deb, "1.34.1-1.1", platform.AMD64, "kubelet:amd64=1.34.1-1.1", "kubelet_1.34.1-1.1_amd64.deb"},
		{platform.Deb, "1.34.10-1.1", platform.AMD64, "kubelet:amd64=1.34.10-1.1", "kubelet_1.34.10-1.1_amd64.deb"},
		{platform.Deb, "1.34.10~rc.1-1.1", platform.AMD64, "kubelet:amd64=1.34.10~rc.1-1.1", "kubelet_1.34.10~rc.1-1.1_amd64.deb"},
		{platform.Deb, "1.34.1-1.1", platform.ARM64, "kubelet:arm64=1.34.1-1.1", "kubelet_1.34.1-1.1_arm64.deb"},
		// dpkg calls 1.34.01 and 1.34.1 equal; the repository's spelling is downloaded.
		{platform.Deb, "1.34.01-1.1", platform.AMD64, "kubelet:amd64=1.34.1-1.1", "kubelet_1.34.1-1.1_amd64.deb"},
		{platform.RPM, "1.34.1-1.azl3", platform.AMD64, "kubelet-0:1.34.1-1.azl3.x86_64", "kubelet-1.34.1-1.azl3.x86_64.rpm"},
		{platform.RPM, "1.34.10-1.azl3", platform.ARM64, "kubelet-0:1.34.10-1.azl3.aarch64", "kubelet-1.34.10-1.azl3.aarch64.rpm"},
		{platform.RPM, "0:1.34.10-1.azl3", platform.ARM64, "kubelet-0:1.34.10-1.azl3.aarch64", "kubelet-1.34.10-1.azl3.aarch64.rpm"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s", tt.format, tt.want, tt.arch), func(t *testing.T) {
			f := aptFake(aptVersions)
			if tt.format == platform.RPM {
				f = dnfFake(rpmVersions)
			}
			pkgbuild.Require(t, pkgbuild.Tools(tt.format)...)
			m := newManager(t, tt.format, f, Options{})
			root := testRoot(t)
			got, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(tt.format, tt.want), tt.arch, root, cacheDir)
			if err != nil {
				t.Fatal(err)
			}
			if want := "opt/kubelet/downloads/" + tt.wantFile; got != want {
				t.Errorf("path = %s, want %s", got, want)
			}
			if fi, err := root.Lstat(got); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
				t.Errorf("cached package: %v, %v", fi, err)
			}
			dl := f.of("download")
			if len(dl) != 1 || dl[0].last() != tt.spec {
				t.Fatalf("download calls = %v, want one for %s", dl, tt.spec)
			}
			// The tool downloads into a private directory outside the root
			// (apt-get into its working directory, dnf into --destdir),
			// removed afterwards.
			into := dl[0].dir
			if tt.format == platform.RPM {
				for _, a := range dl[0].args {
					if v, ok := strings.CutPrefix(a, "--destdir="); ok {
						into = v
					}
				}
			}
			if into == "" || strings.HasPrefix(into, root.Name()) {
				t.Errorf("the tool downloaded into %q, want a private directory outside the root %s", into, root.Name())
			}
			if _, err := os.Lstat(into); err == nil {
				t.Errorf("private download directory %s left behind", into)
			}
			if len(f.of("update"))+len(f.of("makecache")) != 0 {
				t.Error("metadata refreshed although the version was offered")
			}
		})
	}
}

func TestFetchNotOffered(t *testing.T) {
	tests := []struct {
		format  platform.Format
		want    string
		arch    platform.Arch
		message string
	}{
		{platform.Deb, "1.34.2-1.1", platform.AMD64,
			"kubelet=1.34.2-1.1 (amd64) is not offered by the apt-get repositories: 1.34.x versions offered: 1.34.1-1.1, 1.34.10~rc.1-1.1, 1.34.10-1.1, 1.34.11-1.1"},
		{platform.Deb, "1.35.0-1.1", platform.ARM64,
			"kubelet=1.35.0-1.1 (arm64) is not offered by the apt-get repositories: they offer no 1.35.x version of kubelet for arm64 (5 versions in all)"},
		{platform.RPM, "1.34.2-1.azl3", platform.ARM64,
			"kubelet=1.34.2-1.azl3 (aarch64) is not offered by the dnf repositories: 1.34.x versions offered: 1.34.1-1.azl3, 1.34.10~rc.1-1.azl3, 1.34.10-1.azl3, 1.34.11-1.azl3"},
		// Not MAJOR.MINOR.PATCH: no minor line to narrow the list to.
		{platform.Deb, "2024.1-1", platform.AMD64,
			"kubelet=2024.1-1 (amd64) is not offered by the apt-get repositories: versions offered: 1.33.5-1.1, 1.34.1-1.1, 1.34.10~rc.1-1.1, 1.34.10-1.1, 1.34.11-1.1"},
		// Same version, other release: still not the package asked for.
		{platform.RPM, "1.34.1-2.azl3", platform.AMD64,
			"kubelet=1.34.1-2.azl3 (x86_64) is not offered by the dnf repositories: 1.34.x versions offered: 1.34.1-1.azl3, 1.34.10~rc.1-1.azl3, 1.34.10-1.azl3, 1.34.11-1.azl3"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			f := aptFake(aptVersions)
			refresh := "update"
			if tt.format == platform.RPM {
				f, refresh = dnfFake(rpmVersions), "makecache"
			}
			m := newManager(t, tt.format, f, Options{})
			_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(tt.format, tt.want), tt.arch, testRoot(t), cacheDir)
			if !errors.Is(err, ErrVersionNotOffered) {
				t.Fatalf("err = %v, want ErrVersionNotOffered", err)
			}
			var noe *NotOfferedError
			if !errors.As(err, &noe) {
				t.Fatalf("err %T is not a *NotOfferedError", err)
			}
			if err.Error() != tt.message {
				t.Errorf("message\n got: %s\nwant: %s", err, tt.message)
			}
			if n := len(f.of(refresh)); n != 1 {
				t.Errorf("metadata refreshed %d times, want once", n)
			}
			if n := len(f.of("download")); n != 0 {
				t.Errorf("%d downloads for a version not offered", n)
			}
		})
	}
}

// A node whose apt lists were removed from the image: the first query finds
// nothing, Fetch runs apt-get update once and then finds the version.
func TestFetchUpdatesAptListsOnceWhenMissing(t *testing.T) {
	updated := false
	inner := aptFake(aptVersions)
	f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
		switch {
		case c.sub() == "update":
			updated = true
		case c.sub() == "show" && !updated:
			return nil, failure(c, "E: No packages found")
		}
		return inner.fn(ctx, c, n)
	}}
	m := newManager(t, platform.Deb, f, Options{})
	if _, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.10-1.1"), platform.AMD64, testRoot(t), cacheDir); err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, c := range f.calls {
		subs = append(subs, c.sub())
	}
	if want := []string{"show", "update", "show", "show", "download"}; !slices.Equal(subs, want) {
		t.Errorf("commands = %v, want %v", subs, want)
	}
}

func TestRetries(t *testing.T) {
	lock := "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 123 (apt-get)"
	tests := []struct {
		name      string
		retries   int
		failures  int    // how many download attempts fail before one succeeds
		output    string // what a failed attempt prints
		wantCalls int
		wantErr   bool
	}{
		{"transient then success", 3, 2, lock, 3, false},
		{"network then success", 3, 1, "E: Failed to fetch http://x/kubelet.deb  Temporary failure resolving 'x'", 2, false},
		{"bounded", 2, 100, lock, 3, true},
		{"negative means no retry", -1, 100, lock, 1, true},
		{"not offered is final", 3, 100, "E: Version '1.34.1-1.1' for 'kubelet:amd64' was not found", 1, true},
		{"unknown package is final", 3, 100, "E: Unable to locate package kubelet:amd64", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := aptFake(aptVersions)
			f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
				if c.sub() == "download" && n <= tt.failures {
					return nil, failure(c, tt.output)
				}
				return inner.fn(ctx, c, n)
			}}
			m := newManager(t, platform.Deb, f, Options{Retries: tt.retries})
			_, err := m.Download(t.Context(), "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, t.TempDir())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			var ce *CommandError
			if err != nil && !errors.As(err, &ce) {
				t.Errorf("err %T does not carry a *CommandError", err)
			}
			if n := len(f.of("download")); n != tt.wantCalls {
				t.Errorf("download ran %d times, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestBackoffDoubles(t *testing.T) {
	var at []time.Time
	f := &fake{fn: func(_ context.Context, c call, _ int) ([]byte, error) {
		at = append(at, time.Now())
		return nil, failure(c, "E: Could not get lock")
	}}
	m := newManager(t, platform.Deb, f, Options{Retries: 2, Backoff: 20 * time.Millisecond})
	if _, err := m.Versions(t.Context(), "kubelet", platform.AMD64); err == nil {
		t.Fatal("no error")
	}
	if len(at) != 3 {
		t.Fatalf("%d attempts, want 3", len(at))
	}
	if d1, d2 := at[1].Sub(at[0]), at[2].Sub(at[1]); d1 < 20*time.Millisecond || d2 < 40*time.Millisecond {
		t.Errorf("waits %v, %v: want at least 20ms then 40ms", d1, d2)
	}
}

func TestDeadline(t *testing.T) {
	tests := []struct {
		name string
		run  func(ctx context.Context, c call, n int) ([]byte, error)
		opts Options
	}{
		{"hung command", func(ctx context.Context, c call, _ int) ([]byte, error) {
			<-ctx.Done() // as the real runner does once it has killed the command
			return nil, failure(c, "killed")
		}, Options{Deadline: 50 * time.Millisecond}},
		{"backoff longer than the deadline", func(_ context.Context, c call, _ int) ([]byte, error) {
			return nil, failure(c, "E: Could not get lock")
		}, Options{Deadline: 50 * time.Millisecond, Backoff: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, platform.Deb, &fake{fn: tt.run}, tt.opts)
			start := time.Now()
			_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, testRoot(t), cacheDir)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v for a 50ms deadline", d)
			}
		})
	}
}

// Fetch's deadline covers the whole fetch, not each step: three steps of
// 40ms each overrun a 100ms deadline.
func TestDeadlineIsTotal(t *testing.T) {
	inner := aptFake(aptVersions)
	f := &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
		select {
		case <-time.After(40 * time.Millisecond):
		case <-ctx.Done():
			return nil, failure(c, "killed")
		}
		return inner.fn(ctx, c, n)
	}}
	m := newManager(t, platform.Deb, f, Options{Deadline: 100 * time.Millisecond})
	_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, testRoot(t), cacheDir)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestParseAptShow(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		arch    platform.Arch
		want    []string // spec of each record
		wantBad int
	}{
		{"versions", aptStanza("1.34.1-1.1", "amd64", 4) + aptStanza("1.34.10-1.1", "amd64", 4), platform.AMD64,
			[]string{"kubelet:amd64=1.34.1-1.1", "kubelet:amd64=1.34.10-1.1"}, 0},
		{"other arch skipped", aptStanza("1.34.1-1.1", "arm64", 4) + aptStanza("1.34.1-1.1", "amd64", 4), platform.ARM64,
			[]string{"kubelet:arm64=1.34.1-1.1"}, 0},
		{"other package skipped", "Package: kubelet-dbg\nVersion: 1.34.1-1.1\nArchitecture: amd64\nFilename: x.deb\n\n" + aptStanza("1.34.1-1.1", "amd64", 4),
			platform.AMD64, []string{"kubelet:amd64=1.34.1-1.1"}, 0},
		{"no trailing blank line", strings.TrimSpace(aptStanza("1.34.1-1.1", "amd64", 4)), platform.AMD64,
			[]string{"kubelet:amd64=1.34.1-1.1"}, 0},
		{"epoch kept as spelled", aptStanza("1:1.34.1-1.1", "amd64", 4), platform.AMD64, []string{"kubelet:amd64=1:1.34.1-1.1"}, 0},
		{"bad version reported, others kept", aptStanza("latest", "amd64", 4) + aptStanza("1.34.1-1.1", "amd64", 4), platform.AMD64,
			[]string{"kubelet:amd64=1.34.1-1.1"}, 1},
		{"empty", "", platform.AMD64, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, bad := parseAptShow([]byte(tt.in), "kubelet", tt.arch)
			var got []string
			for _, r := range recs {
				got = append(got, r.spec)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records = %v, want %v", got, tt.want)
			}
			if len(bad) != tt.wantBad {
				t.Errorf("bad = %v, want %d", bad, tt.wantBad)
			}
		})
	}
	recs, _ := parseAptShow([]byte(aptStanza("1.34.1-1.1", "amd64", 1234)), "kubelet", platform.AMD64)
	if r := recs[0]; r.size != 1234 {
		t.Errorf("record = %+v", r)
	}
}

func TestParseRepoquery(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		arch    platform.Arch
		want    []string
		wantVer []string
		wantBad int
	}{
		{"versions", string(repoqueryLines("x86_64", "1.34.1-1.azl3", "1.34.10-1.azl3")), platform.AMD64,
			[]string{"kubelet-0:1.34.1-1.azl3.x86_64", "kubelet-0:1.34.10-1.azl3.x86_64"}, []string{"1.34.1-1.azl3", "1.34.10-1.azl3"}, 0},
		{"epoch", string(repoqueryLines("aarch64", "2:1.34.1-1.azl3")), platform.ARM64,
			[]string{"kubelet-2:1.34.1-1.azl3.aarch64"}, []string{"2:1.34.1-1.azl3"}, 0},
		{"other arch and name skipped", string(repoqueryLines("x86_64", "1.34.1-1.azl3")) +
			"kubelet-dbg\t0\t1.34.1\t1.azl3\taarch64\tx.rpm\t4\n" + string(repoqueryLines("aarch64", "1.34.11-1.azl3")), platform.ARM64,
			[]string{"kubelet-0:1.34.11-1.azl3.aarch64"}, []string{"1.34.11-1.azl3"}, 0},
		{"messages skipped", "Added local repo from file:///x\nLast metadata expiration check: 0:00:04 ago\n" + string(repoqueryLines("x86_64", "1.34.1-1.azl3")),
			platform.AMD64, []string{"kubelet-0:1.34.1-1.azl3.x86_64"}, []string{"1.34.1-1.azl3"}, 0},
		{"bad version reported", "kubelet\t0\tlatest\t1\tx86_64\tx.rpm\t4\n", platform.AMD64, nil, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, bad := parseRepoquery([]byte(tt.in), "kubelet", tt.arch)
			var got, ver []string
			for _, r := range recs {
				got, ver = append(got, r.spec), append(ver, r.version.String())
			}
			if !slices.Equal(got, tt.want) || !slices.Equal(ver, tt.wantVer) {
				t.Errorf("records = %v %v, want %v %v", got, ver, tt.want, tt.wantVer)
			}
			if len(bad) != tt.wantBad {
				t.Errorf("bad = %v, want %d", bad, tt.wantBad)
			}
		})
	}
}

func TestVersionsSortedWithoutDuplicates(t *testing.T) {
	f := aptFake([]string{"1.34.11-1.1", "1.34.1-1.1", "1.34.10-1.1", "1.34.1-1.1", "1.34.10~rc.1-1.1"})
	m := newManager(t, platform.Deb, f, Options{})
	vs, err := m.Versions(t.Context(), "kubelet", platform.AMD64)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := versionStrings(vs), []string{"1.34.1-1.1", "1.34.10~rc.1-1.1", "1.34.10-1.1", "1.34.11-1.1"}; !slices.Equal(got, want) {
		t.Errorf("versions = %v, want %v", got, want)
	}
}

func TestDownloadChecksTheFile(t *testing.T) {
	v := pkgversion.MustParse(platform.Deb, "1.34.1-1.1")
	// withDownload is aptFake with another download.
	withDownload := func(download func(c call) error) *fake {
		inner := aptFake(aptVersions)
		return &fake{fn: func(ctx context.Context, c call, n int) ([]byte, error) {
			if c.sub() == "download" {
				return nil, download(c)
			}
			return inner.fn(ctx, c, n)
		}}
	}
	write := func(names ...string) func(c call) error {
		return func(c call) error {
			for _, name := range names {
				if err := os.WriteFile(filepath.Join(c.dir, name), []byte("deb!"), 0o644); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for _, tt := range []struct {
		name  string
		f     *fake
		setup func(dir string) string // returns the directory to download into
		err   string
	}{
		{"relative dir", aptFake(aptVersions), func(string) string { return "downloads" }, "not an absolute path"},
		{"dir not empty", aptFake(aptVersions), func(dir string) string {
			os.WriteFile(filepath.Join(dir, "old.deb"), nil, 0o644)
			return dir
		}, "is not empty"},
		{"success without a file", withDownload(write()), nil, "left 0 files, want one: []"},
		{"two files", withDownload(write("kubelet_1.34.1-1.1_amd64.deb", "libfoo_1_amd64.deb")), nil,
			`left 2 files, want one: ["kubelet_1.34.1-1.1_amd64.deb" "libfoo_1_amd64.deb"]`},
		{"symlink", withDownload(func(c call) error {
			return os.Symlink("/etc/passwd", filepath.Join(c.dir, "kubelet_1.34.1-1.1_amd64.deb"))
		}), nil, "is not a regular file (L---------)"},
		{"wrong size", &fake{fn: func(_ context.Context, c call, _ int) ([]byte, error) {
			if c.sub() == "download" {
				return nil, os.WriteFile(filepath.Join(c.dir, "kubelet_1.34.1-1.1_amd64.deb"), []byte("truncated"), 0o644)
			}
			return []byte(aptStanza("1.34.1-1.1", "amd64", 4)), nil
		}}, nil, "has 9 bytes, the repository says 4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, platform.Deb, tt.f, Options{})
			dir := t.TempDir()
			if tt.setup != nil {
				dir = tt.setup(dir)
			}
			if _, err := m.Download(t.Context(), "kubelet", v, platform.AMD64, dir); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"kubelet", "azure-acr-credential-provider", "NetworkManager", "libstdc++", "python3.12", "foo_bar"} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-okubelet", "kube*", "kube?", "kube[let]", "kube let", "kubelet=1.0", "kubelet:amd64", "../x"} {
		if err := checkName(bad); err == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
	m := newManager(t, platform.RPM, dnfFake(rpmVersions), Options{})
	if _, err := m.Versions(t.Context(), "kube*", platform.AMD64); err == nil {
		t.Error("Versions accepted a glob")
	}
}

func TestNew(t *testing.T) {
	for format, name := range map[platform.Format]string{platform.Deb: "apt-get", platform.RPM: "dnf"} {
		m, err := New(format, Options{})
		if err != nil || m.Name() != name {
			t.Errorf("New(%s) = %v, %v; want %s", format, m, err, name)
		}
		if _, ok := m.(Updater); !ok {
			t.Errorf("%s is not an Updater", name)
		}
	}
	if _, err := New("apk", Options{}); err == nil {
		t.Error("New(apk) succeeded")
	}
}

func TestExtraArgsComeFirst(t *testing.T) {
	f := dnfFake(rpmVersions)
	m := newManager(t, platform.RPM, f, Options{ExtraArgs: []string{"--installroot=/tmp/r", "--repo=local"}})
	if _, err := m.Versions(t.Context(), "kubelet", platform.AMD64); err != nil {
		t.Fatal(err)
	}
	c := f.calls[0]
	if c.name != "dnf" || !slices.Equal(c.args[:2], []string{"--installroot=/tmp/r", "--repo=local"}) || c.last() != "kubelet" {
		t.Errorf("command = %s %v", c.name, c.args)
	}
}

func TestExecRunner(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	r := execRunner{}
	out, err := r.Run(t.Context(), Command{Dir: t.TempDir(), Name: "sh", Args: []string{"-c", `echo "$LC_ALL"; pwd`}})
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); lines[0] != "C" {
		t.Errorf("LC_ALL = %q, want C so messages are not translated", lines[0])
	}

	_, err = r.Run(t.Context(), Command{Name: "sh", Args: []string{"-c", "echo progress; echo 'E: Could not get lock' >&2; exit 100"}})
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CommandError", err)
	}
	if ce.Cmd[0] != "sh" || !strings.Contains(ce.Output, "E: Could not get lock") || !strings.Contains(ce.Output, "progress") {
		t.Errorf("CommandError = %+v", ce)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 100 {
		t.Errorf("exit error = %v", ce.Err)
	}

	// A cancelled command stops at once, with the children it started.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.Run(ctx, Command{Name: "sh", Args: []string{"-c", "sleep 30 & sleep 30; wait"}})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled command: err %v after %v", err, time.Since(start))
	}

	_, err = r.Run(t.Context(), Command{Name: "reconcile-no-such-tool"})
	if !permanent(err, nil) {
		t.Errorf("a missing tool should not be retried: %v", err)
	}
}

func TestFetchRejectsTheOtherFormat(t *testing.T) {
	f := dnfFake(rpmVersions)
	m := newManager(t, platform.RPM, f, Options{})
	_, err := Fetch(t.Context(), m, "kubelet", pkgversion.MustParse(platform.Deb, "1.34.1-1.1"), platform.AMD64, testRoot(t), cacheDir)
	if err == nil || !strings.Contains(err.Error(), "is a deb version; dnf handles rpm packages") {
		t.Errorf("err = %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("ran %v", f.calls)
	}
}
