// Package verify checks, without changing anything, that the disk holds what
// the manifest says: the image test after bake, or the targets after boot.
package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/binver"
	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// Check is the outcome for one binary.
type Check struct {
	Tool           string   `json:"tool"`
	Entry          int      `json:"entry"`
	PackageVersion string   `json:"package_version"`
	Path           string   `json:"path"`
	OK             bool     `json:"ok"`
	Problems       []string `json:"problems,omitempty"`
	Reported       string   `json:"reported_version,omitempty"`
}

func (c Check) String() string {
	if c.OK {
		s := fmt.Sprintf("ok   %s (%s %s)", c.Path, c.Tool, c.PackageVersion)
		if c.Reported != "" {
			s += fmt.Sprintf(": reports %q", c.Reported)
		}
		return s
	}
	return fmt.Sprintf("FAIL %s (%s %s): %s", c.Path, c.Tool, c.PackageVersion, strings.Join(c.Problems, "; "))
}

// Options select what is checked.
type Options struct {
	// K8sVersion, when set, checks the boot targets for that cluster version
	// instead of the versioned binaries.
	K8sVersion *semver.Version
	// Exec runs each binary that can run on this host and checks that its
	// version output holds the version.
	Exec     bool
	HostArch platform.Arch
}

// Run checks every entry of the manifest for distro and arch.
func Run(ctx context.Context, root *os.Root, m *manifest.Manifest, d platform.Distro, arch platform.Arch, o Options) ([]Check, error) {
	rec, err := state.LoadRecord(root)
	if err != nil && !errors.Is(err, state.ErrRecordCorrupt) {
		return nil, err
	}
	recErr := err
	entries := m.Entries(d, arch)
	var checks []Check
	if o.K8sVersion == nil {
		for _, e := range entries {
			checks = append(checks, check(ctx, root, rec, recErr, e, e.Versioned, o))
		}
		return checks, nil
	}
	for _, tool := range manifest.Tools(entries) {
		e, ok := manifest.Resolve(entries, tool, o.K8sVersion)
		if !ok {
			checks = append(checks, Check{Tool: tool, Entry: -1, Problems: []string{fmt.Sprintf("no entry serves Kubernetes %s", o.K8sVersion)}})
			continue
		}
		checks = append(checks, check(ctx, root, rec, recErr, e, e.Target, o))
	}
	return checks, nil
}

func check(ctx context.Context, root *os.Root, rec state.Record, recErr error, e manifest.Entry, p string, o Options) Check {
	c := Check{Tool: e.Tool, Entry: e.Index, PackageVersion: e.Version.String(), Path: p}
	fail := func(format string, args ...any) Check {
		c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
		return c
	}
	fi, err := root.Lstat(rootfs.Rel(p))
	if err != nil {
		return fail("missing: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm() != 0o755 {
		fail("mode %s, want 0755", fi.Mode().Perm())
	}
	b, ok := rec.Files[p]
	switch {
	case !ok && recErr != nil:
		fail("not checked against the record: %v", recErr)
	case !ok:
		fail("not in the state record /%s", state.RecordPath)
	case !b.Of(e.Tool, e.Package, e.Version.String(), string(e.Arch)):
		fail("record says %s, manifest wants %s", b.What(), state.Describe(e.Tool, e.Package, e.Version.String(), string(e.Arch)))
	default:
		got, err := rootfs.DigestFile(root, rootfs.Rel(p))
		if err != nil {
			return fail("%v", err)
		}
		if got.SHA256 != b.SHA256 || got.Size != b.Size {
			fail("sha256 %s (%d bytes), record says %s (%d bytes)", got.SHA256, got.Size, b.SHA256, b.Size)
		}
	}
	if err := checkELF(root, p, e.Arch); err != nil {
		fail("%v", err)
	}
	if o.Exec && e.Arch == o.HostArch {
		out, err := run(ctx, root, p, e.VersionArgs)
		c.Reported, _, _ = strings.Cut(strings.TrimSpace(out), "\n")
		if err != nil {
			fail("%s %s: %v", p, strings.Join(e.VersionArgs, " "), err)
		} else if !e.Version.ReportedIn(out) {
			fail("%s %s printed %q, which does not contain %s", p, strings.Join(e.VersionArgs, " "), c.Reported, e.Version.Upstream)
		}
	}
	c.OK = len(c.Problems) == 0
	return c
}

func checkELF(root *os.Root, p string, arch platform.Arch) error {
	f, err := rootfs.OpenRegular(root, rootfs.Rel(p))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := binver.Read(f, nil)
	if err != nil {
		return err
	}
	return info.CheckArch(arch)
}

// maxOutput bounds what a version command may print into memory.
const maxOutput = 64 << 10

// run runs bin (absolute, under root) with args as the version command:
// empty environment, stdin from /dev/null, its own process group killed
// whole at the timeout and once it exited (a child holding stdout open
// cannot hang verify), and, run as root with a --root other than /,
// chrooted into the root so it sees only the image.
func run(ctx context.Context, root *os.Root, bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	attr := &syscall.SysProcAttr{Setpgid: true}
	path := filepath.Join(root.Name(), filepath.FromSlash(rootfs.Rel(bin)))
	if dir, err := filepath.Abs(root.Name()); err != nil || dir != "/" {
		if os.Geteuid() != 0 {
			return "", fmt.Errorf("refused: --exec with --root %s runs the binary inside the root (chroot), which needs root", root.Name())
		}
		attr.Chroot, path = root.Name(), bin
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	cmd.WaitDelay = time.Second
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out := &limitedBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	err := cmd.Wait()
	// What it left running in its group goes with it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within 10s (killed): %w", ctx.Err())
	}
	return out.String(), err
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
