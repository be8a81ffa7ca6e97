// Package verify checks, without changing anything, that the disk holds what
// the manifest says: the versioned binaries (the image test after bake), or
// with Targets the boot targets for a cluster version (after boot). Each
// binary is checked for: a regular file of mode 0755, named by the state
// record as the entry's binary, with the recorded sha256 and size, an ELF
// whose machine is the entry's arch; with Exec, its version command (run
// sandboxed, see run) prints the entry's version.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/binver"
	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/observe"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// Check is the outcome for one binary.
type Check struct {
	Tool           string
	Entry          int    // -1: no entry serves the cluster version (checked as boot served it, or not at all)
	PackageVersion string // "" with no entry
	Path           string // "" with no entry
	// Findings are the check's errors (the disk differs from the manifest).
	Findings report.Report
	Reported string // with Exec: the first line the version command printed
}

// OK reports whether the binary is what the manifest says.
func (c Check) OK() bool { return !c.Findings.HasErrors() }

// Reason codes of verify's findings.
const (
	CodeMissing         = "file_missing"             // no file at the path
	CodeNotRegular      = "not_regular"              // a directory, link, FIFO … at the path
	CodeMode            = "mode"                     // not mode 0755
	CodeNotInRecord     = "not_in_record"            // the state record does not name the path
	CodeRecordCorrupt   = "record_corrupt"           // the record could not be read
	CodeRecordOther     = "record_other_binary"      // the record names another binary there
	CodeDigest          = "digest_mismatch"          // sha256 or size differ from the record
	CodeUnreadable      = "file_unreadable"          // the file cannot be read
	CodeNotELF          = "not_elf"                  // no ELF binary
	CodeELFMachine      = "elf_machine"              // the ELF machine is not the entry's arch
	CodeExecFailed      = "exec_failed"              // --exec: the version command failed
	CodeVersionReported = "version_not_reported"     // --exec: its output lacks the version
	CodeVersionMissing  = "manifest_version_missing" // --targets: no entry serves the cluster version
)

// Options select what is checked.
type Options struct {
	// Targets checks the boot targets for K8sVersion instead of the
	// versioned binaries.
	Targets    bool
	K8sVersion *semver.Version
	// Exec runs each binary's version command (see run) and checks that its
	// output holds the version. A binary for another arch than the host's
	// is not run.
	Exec     bool
	HostArch platform.Arch
	// RequireManifestVersion makes a cluster version no entry serves a
	// failure, as boot does; else the target of a tool whose entries name
	// exact versions is checked as the revision the record names of that
	// upstream version (boot serves it so).
	RequireManifestVersion bool
}

// Run checks every entry of the manifest for distro and arch.
func Run(ctx context.Context, root *os.Root, m *manifest.Manifest, d platform.Distro, arch platform.Arch, o Options) ([]Check, error) {
	rec, err := observe.LoadRecord(root)
	if err != nil && !errors.Is(err, observe.ErrRecordCorrupt) {
		return nil, err
	}
	recErr := err
	entries := m.Entries(d, arch)
	var checks []Check
	if !o.Targets {
		for _, e := range entries {
			checks = append(checks, check(ctx, root, rec, recErr, e, e.Versioned, o))
		}
		return checks, nil
	}
	if o.K8sVersion == nil {
		return nil, errors.New("verify --targets needs the cluster version: --k8s-version or KUBERNETES_VERSION")
	}
	for _, tool := range manifest.Tools(entries) {
		e, ok := manifest.Resolve(entries, tool, o.K8sVersion)
		if !ok && !o.RequireManifestVersion {
			e, ok = unlisted(entries, tool, o.K8sVersion, rec)
		}
		if !ok {
			c := Check{Tool: tool, Entry: -1}
			c.Findings.Add(report.Item{Kind: report.Error, Code: CodeVersionMissing, Tool: tool, Entry: report.EntryIndex(-1),
				Message: fmt.Sprintf("no %s entry serves Kubernetes %s", tool, o.K8sVersion)})
			checks = append(checks, c)
			continue
		}
		checks = append(checks, check(ctx, root, rec, recErr, e, e.Target, o))
	}
	return checks, nil
}

// unlisted is the entry tool's target is checked against for a cluster
// version no entry serves: the revision of that upstream version the record
// names at the target (none when it names another, which check then says).
func unlisted(entries []manifest.Entry, tool string, v *semver.Version, rec state.Record) (manifest.Entry, bool) {
	e, ok := manifest.Unlisted(entries, tool, v)
	if !ok {
		return e, false
	}
	up := manifest.UpstreamOf(v)
	e.Version = pkgversion.Version{Format: e.Distro.Format(), Upstream: up}
	if b, recorded := rec.Files[e.Target]; recorded {
		if pv, err := pkgversion.Parse(e.Distro.Format(), b.PackageVersion); err == nil && manifest.SameUpstream(pv, up) {
			e.Version = pv
		}
	}
	return e, true
}

func check(ctx context.Context, root *os.Root, rec state.Record, recErr error, e manifest.Entry, p string, o Options) Check {
	c := Check{Tool: e.Tool, Entry: e.Index, PackageVersion: e.Version.String(), Path: p}
	fail := func(code, format string, args ...any) Check {
		c.Findings.Add(report.Item{Kind: report.Error, Code: code, Path: p, Tool: e.Tool, Entry: report.EntryIndex(e.Index), Message: fmt.Sprintf(format, args...)})
		return c
	}
	fi, err := root.Lstat(rootfs.Rel(p))
	if errors.Is(err, fs.ErrNotExist) {
		return fail(CodeMissing, "missing: %s: no such file", p)
	}
	if err != nil {
		return fail(CodeUnreadable, "%s: %s", p, cause(err))
	}
	if !fi.Mode().IsRegular() {
		return fail(CodeNotRegular, "not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm() != 0o755 {
		fail(CodeMode, "mode %s, want 0755", fi.Mode().Perm())
	}
	b, ok := rec.Files[p]
	switch {
	case !ok && recErr != nil:
		fail(CodeRecordCorrupt, "not checked against the record: %v", recErr)
	case !ok:
		fail(CodeNotInRecord, "not in the state record /%s", state.RecordPath)
	case !b.Of(e.Tool, e.Package, e.Version.String(), string(e.Arch)):
		fail(CodeRecordOther, "record says %s, manifest wants %s", b.What(), state.Describe(e.Tool, e.Package, e.Version.String(), string(e.Arch)))
	case e.Source != manifest.FromPackage && b.Source.Digest != e.Digest:
		fail(CodeRecordOther, "record says it came out of %s@%s, the manifest pins %s", b.Source.Ref, b.Source.Digest, e.Digest)
	default:
		got, err := rootfs.DigestFile(root, rootfs.Rel(p))
		if err != nil {
			return fail(CodeUnreadable, "%s: %s", p, cause(err))
		}
		if got.SHA256 != b.SHA256 || got.Size != b.Size {
			fail(CodeDigest, "sha256 %s (%d bytes), record says %s (%d bytes)", got.SHA256, got.Size, b.SHA256, b.Size)
		}
	}
	if code, err := checkELF(root, p, e.Arch); err != nil {
		fail(code, "%v", err)
	}
	if o.Exec && e.Arch == o.HostArch {
		out, err := run(ctx, root, p, e.VersionArgs)
		c.Reported, _, _ = strings.Cut(strings.TrimSpace(out), "\n")
		if err != nil {
			fail(CodeExecFailed, "%s %s: %v", p, strings.Join(e.VersionArgs, " "), err)
		} else if !e.Version.ReportedIn(out) {
			fail(CodeVersionReported, "%s %s printed %q, which does not contain %s", p, strings.Join(e.VersionArgs, " "), c.Reported, e.Version.Upstream)
		}
	}
	return c
}

// cause is err without the syscall and path of an *fs.PathError, which the
// message names already.
func cause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func checkELF(root *os.Root, p string, arch platform.Arch) (code string, err error) {
	f, err := rootfs.OpenRegular(root, rootfs.Rel(p))
	if err != nil {
		return CodeUnreadable, fmt.Errorf("%s: %s", p, cause(err))
	}
	defer f.Close()
	info, err := binver.Read(f, nil)
	if err != nil {
		return CodeNotELF, err
	}
	return CodeELFMachine, info.CheckArch(arch)
}

// missingInterp is the ELF loader bin names when the root lacks it, else "".
func missingInterp(root *os.Root, bin string) string {
	f, err := rootfs.OpenRegular(root, rootfs.Rel(bin))
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := binver.Read(f, nil)
	if err != nil || info.Interp == "" {
		return ""
	}
	if _, err := root.Stat(rootfs.Rel(info.Interp)); err == nil {
		return ""
	}
	return info.Interp
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
	path := observe.HostPath(root, bin)
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
		// A dynamically linked binary whose loader the root lacks fails
		// to start with ENOENT, as if the binary itself were missing.
		if errors.Is(err, fs.ErrNotExist) && attr.Chroot != "" {
			if loader := missingInterp(root, bin); loader != "" {
				return "", fmt.Errorf("it is dynamically linked and its loader %s is not in the root: it runs only where its libc is", loader)
			}
		}
		return "", err
	}
	err := cmd.Wait()
	// What it left running in its group goes with it. A binary that
	// answered and exited is not failed for a child that kept its stdout.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
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
