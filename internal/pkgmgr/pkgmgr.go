// Package pkgmgr lists and downloads packages with the node's own package
// manager (apt-get for deb, dnf for rpm), so that boot can fetch the exact
// package a manifest names when neither the extracted binary nor a cached
// package is on disk. It only ever downloads: nothing is installed, no
// package database is changed and no maintainer script runs.
//
// Versions are picked by comparing them as package versions
// (pkgversion.Equal), never by matching strings, so 1.34.1 never selects
// 1.34.10 and 1.34.10 never selects 1.34.10~rc.1.
package pkgmgr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Manager lists and downloads packages with the node's own package manager
// and repository configuration. The managers New returns are safe for
// concurrent use (the tools' own locks permitting).
type Manager interface {
	// Name is the command, "apt-get" or "dnf", for plan text.
	Name() string
	// Versions lists what the repositories offer for name and arch, sorted
	// oldest first, without duplicates.
	Versions(ctx context.Context, name string, arch platform.Arch) ([]pkgversion.Version, error)
	// Download fetches exactly name=version for arch into dir (an absolute
	// host path, created if missing) and returns the file's path. No install,
	// no dpkg/rpm database change, no scripts.
	Download(ctx context.Context, name string, version pkgversion.Version, arch platform.Arch, dir string) (string, error)
}

// Updater is implemented by managers whose repository metadata can be stale
// (apt's lists are only refreshed by "apt-get update"; images often ship
// without them). Fetch calls Update once, and only when the wanted version is
// not in the metadata, so a node whose metadata is current makes no extra
// network round trip.
type Updater interface {
	Update(ctx context.Context) error
}

// Runner runs a command in dir ("" for the current directory) and returns
// its standard output. A failure should be a *CommandError.
type Runner interface {
	Run(ctx context.Context, dir string, name string, args ...string) (stdout []byte, err error)
}

// RunnerFunc adapts a function to Runner, for fakes in tests.
type RunnerFunc func(ctx context.Context, dir string, name string, args ...string) ([]byte, error)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	return f(ctx, dir, name, args...)
}

// Options configure a Manager. The zero value is what production uses.
type Options struct {
	// Runner runs the package manager; nil runs real commands.
	Runner Runner
	// ExtraArgs go right after the command name, before the subcommand
	// (apt "-o Key=Value", dnf "--setopt=..."). Production passes none so the
	// node's own configuration, proxies and credentials are used; tests point
	// the tools at a temporary repository with them.
	ExtraArgs []string
	// Retries is how many times a failed command is retried: 0 means 3,
	// negative means never. A version that is not offered is never retried.
	Retries int
	// Backoff is the wait before the first retry, doubled each time up to
	// 30s: 0 means 2s.
	Backoff time.Duration
	// Deadline bounds each Manager call and each Fetch as a whole, retries
	// included: 0 means 5 minutes. The caller's ctx may end it sooner.
	Deadline time.Duration
	// Logger receives one debug record per command and a warning per retry;
	// nil discards.
	Logger *slog.Logger
}

const (
	defaultRetries  = 3
	defaultBackoff  = 2 * time.Second
	maxBackoff      = 30 * time.Second
	defaultDeadline = 5 * time.Minute
)

// New returns the manager for a package format: apt-get for deb, dnf for rpm.
func New(format platform.Format, opts Options) (Manager, error) {
	c := newCommander(opts)
	switch format {
	case platform.Deb:
		return &manager{c: c, tool: &apt{c: c}}, nil
	case platform.RPM:
		return &manager{c: c, tool: &dnf{c: c}}, nil
	}
	return nil, fmt.Errorf("no package manager for package format %q (want %q or %q)", format, platform.Deb, platform.RPM)
}

// tool is what differs between apt-get and dnf: how each lists, downloads
// and refreshes. manager does the rest the same way for both.
type tool interface {
	// command is the tool's name, for Manager.Name.
	command() string
	format() platform.Format
	// records lists what the repositories offer of name (already checked
	// by checkName) for arch.
	records(ctx context.Context, name string, arch platform.Arch) ([]record, error)
	// download runs the tool's download of rec for arch into dir, which
	// exists; downloadInto checks the result.
	download(ctx context.Context, rec record, arch platform.Arch, dir string) error
	// update refreshes the repository metadata.
	update(ctx context.Context) error
}

// manager is the Manager and Updater New returns: it bounds each call by
// the deadline, checks names and directories, chooses the record of the
// version asked for and checks the downloaded file around one tool.
type manager struct {
	c    *commander
	tool tool
}

func (m *manager) Name() string            { return m.tool.command() }
func (m *manager) deadline() time.Duration { return m.c.limit }
func (m *manager) format() platform.Format { return m.tool.format() }

func (m *manager) records(ctx context.Context, name string, arch platform.Arch) ([]record, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return m.tool.records(ctx, name, arch)
}

func (m *manager) Versions(ctx context.Context, name string, arch platform.Arch) ([]pkgversion.Version, error) {
	ctx, cancel := m.c.withDeadline(ctx)
	defer cancel()
	recs, err := m.records(ctx, name, arch)
	if err != nil {
		return nil, err
	}
	return versionsOf(recs), nil
}

func (m *manager) Update(ctx context.Context) error {
	ctx, cancel := m.c.withDeadline(ctx)
	defer cancel()
	return m.tool.update(ctx)
}

func (m *manager) Download(ctx context.Context, name string, version pkgversion.Version, arch platform.Arch, dir string) (string, error) {
	ctx, cancel := m.c.withDeadline(ctx)
	defer cancel()
	if err := checkDir(dir); err != nil {
		return "", err
	}
	recs, err := m.records(ctx, name, arch)
	if err != nil {
		return "", err
	}
	rec, err := choose(m, m.format(), recs, name, version, arch)
	if err != nil {
		return "", err
	}
	return downloadInto(dir, rec, func() error { return m.tool.download(ctx, rec, arch, dir) })
}

// ErrVersionNotOffered is wrapped by the error (a *NotOfferedError) returned
// when the repositories do not offer the exact version asked for.
var ErrVersionNotOffered = errors.New("version not offered by the repositories")

// NotOfferedError says what was asked for and what the repositories offer
// instead on the same minor line, so a human can spot a typo or a version that
// was never published.
type NotOfferedError struct {
	Manager string
	Name    string
	Want    pkgversion.Version
	Arch    string // in the format's spelling: amd64/arm64 or x86_64/aarch64
	// Line is the minor line of Want, "1.34.x"; empty when Want's upstream
	// version is not MAJOR.MINOR.PATCH, and then Offered holds every version.
	Line    string
	Offered []pkgversion.Version // oldest first
	Total   int                  // versions of Name for Arch offered in all
}

func (e *NotOfferedError) Error() string {
	what := fmt.Sprintf("%s=%s (%s) is not offered by the %s repositories", e.Name, e.Want, e.Arch, e.Manager)
	line := e.Line + " "
	if e.Line == "" {
		line = ""
	}
	if len(e.Offered) == 0 {
		return fmt.Sprintf("%s: they offer no %sversion of %s for %s (%d versions in all)", what, line, e.Name, e.Arch, e.Total)
	}
	vs := make([]string, len(e.Offered))
	for i, v := range e.Offered {
		vs[i] = v.String()
	}
	return fmt.Sprintf("%s: %sversions offered: %s", what, line, strings.Join(vs, ", "))
}

// Unwrap makes errors.Is(err, ErrVersionNotOffered) true.
func (e *NotOfferedError) Unwrap() error { return ErrVersionNotOffered }

func notOffered(m Manager, format platform.Format, name string, want pkgversion.Version, arch platform.Arch, offered []pkgversion.Version) *NotOfferedError {
	e := &NotOfferedError{Manager: m.Name(), Name: name, Want: want, Arch: arch.In(format), Total: len(offered)}
	w, err := want.Kube()
	if err != nil {
		e.Offered = offered
		return e
	}
	e.Line = fmt.Sprintf("%d.%d.x", w.Major(), w.Minor())
	for _, v := range offered {
		if k, err := v.Kube(); err == nil && k.Major() == w.Major() && k.Minor() == w.Minor() {
			e.Offered = append(e.Offered, v)
		}
	}
	return e
}

// Fetch is what boot calls: it finds want among the versions the
// repositories offer for arch, refreshing the metadata once if the manager is
// an Updater and want is missing, and downloads it into dir. The path of the
// downloaded file is returned. A version not offered gives an error wrapping
// ErrVersionNotOffered (a *NotOfferedError).
func Fetch(ctx context.Context, m Manager, name string, want pkgversion.Version, arch platform.Arch, dir string) (path string, err error) {
	if own, ok := m.(managerOptions); ok {
		if own.format() != want.Format {
			return "", fmt.Errorf("%s=%s is a %s version; %s handles %s packages", name, want, want.Format, m.Name(), own.format())
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, own.deadline())
		defer cancel()
	}
	offered, err := m.Versions(ctx, name, arch)
	if err != nil {
		return "", fmt.Errorf("listing the versions of %s with %s: %w", name, m.Name(), err)
	}
	got, ok := pick(offered, want)
	if !ok {
		if u, isUpdater := m.(Updater); isUpdater {
			if err := u.Update(ctx); err != nil {
				return "", fmt.Errorf("%s=%s is not in the %s metadata, and refreshing it failed: %w", name, want, m.Name(), err)
			}
			if offered, err = m.Versions(ctx, name, arch); err != nil {
				return "", fmt.Errorf("listing the versions of %s with %s: %w", name, m.Name(), err)
			}
			got, ok = pick(offered, want)
		}
	}
	if !ok {
		return "", notOffered(m, want.Format, name, want, arch, offered)
	}
	p, err := m.Download(ctx, name, got, arch, dir)
	if err != nil {
		return "", fmt.Errorf("downloading %s=%s (%s) with %s: %w", name, got, arch, m.Name(), err)
	}
	return p, nil
}

// managerOptions is what Fetch learns from the managers New returns (other
// implementations, such as fakes, do without).
type managerOptions interface {
	deadline() time.Duration
	format() platform.Format
}

// pick returns the offered version equal to want, preferring the one spelled
// the same (a repository could hold both 1.0-1 and 1.00-1, which dpkg calls
// equal).
func pick(offered []pkgversion.Version, want pkgversion.Version) (pkgversion.Version, bool) {
	var found []pkgversion.Version
	for _, v := range offered {
		if pkgversion.Equal(v, want) {
			if v.String() == want.String() {
				return v, true
			}
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return pkgversion.Version{}, false
	}
	return found[0], true
}

// record is one version of a package in a repository's metadata.
type record struct {
	version pkgversion.Version
	spec    string // what the tool's download takes: kubelet:arm64=1.34.1-1.1, kubelet-0:1.34.1-1.azl3.aarch64
	file    string // where the repository keeps it (apt Filename, dnf location); the base name is the downloaded file's
	size    int64  // 0: unknown
}

func versionsOf(recs []record) []pkgversion.Version {
	vs := make([]pkgversion.Version, len(recs))
	for i, r := range recs {
		vs[i] = r.version
	}
	return sortVersions(vs)
}

// choose finds the record of want, or says what is offered instead.
func choose(m Manager, format platform.Format, recs []record, name string, want pkgversion.Version, arch platform.Arch) (record, error) {
	vs := versionsOf(recs)
	got, ok := pick(vs, want)
	if !ok {
		return record{}, notOffered(m, format, name, want, arch, vs)
	}
	for _, r := range recs {
		if r.version.String() == got.String() {
			return r, nil
		}
	}
	panic("unreachable: pick returned a version not in recs")
}

// sortVersions sorts oldest first and drops duplicates (one version can be in
// several repositories).
func sortVersions(vs []pkgversion.Version) []pkgversion.Version {
	slices.SortStableFunc(vs, pkgversion.Compare)
	return slices.CompactFunc(vs, func(a, b pkgversion.Version) bool { return a.String() == b.String() })
}

// checkName rejects what could be read as an option or a glob pattern: dnf
// matches arguments as globs and NEVRA forms, and a name starting with "-"
// would be an option to either tool.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty package name")
	}
	if !isAlnum(name[0]) {
		return fmt.Errorf("package name %q must start with a letter or digit", name)
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && strings.IndexByte(".+-_", c) < 0 {
			return fmt.Errorf("package name %q: character %q is not allowed", name, c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkDir rejects a relative download directory: the tools would resolve
// it against their own working directory.
func checkDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("download directory %q is not an absolute path", dir)
	}
	return nil
}

// downloadInto runs a tool's download of rec into dir and checks that the
// file is there. The tools name the file after the base name of the
// repository's location for it; that name is untrusted, so it must not lead
// out of dir. A file that a failed download left behind is removed, so that
// it cannot pass for a cached package later; one that was there before is
// left alone. dir is created when missing.
func downloadInto(dir string, rec record, download func() error) (string, error) {
	// apt-get download fails obscurely when its working directory is missing.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating download directory: %w", err)
	}
	base := path.Base(rec.file)
	if rec.file == "" || !filepath.IsLocal(base) || base != filepath.Base(base) {
		return "", fmt.Errorf("repository file name %q is not a plain file name", rec.file)
	}
	p := filepath.Join(dir, base)
	_, statErr := os.Lstat(p)
	pre := statErr == nil
	err := download()
	if err == nil {
		err = verifyDownload(p, rec.size)
	}
	if err != nil {
		if !pre {
			os.Remove(p)
		}
		return "", err
	}
	return p, nil
}

// verifyDownload checks that the tool left a regular file of the size the
// repository metadata announced (size 0: unknown).
func verifyDownload(p string, size int64) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the command succeeded but %s is not there", p)
	}
	if err != nil {
		return fmt.Errorf("checking the downloaded file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("downloaded %s is not a regular file (%s)", p, fi.Mode().Type())
	}
	if size > 0 && fi.Size() != size {
		return fmt.Errorf("downloaded %s has %d bytes, the repository says %d", p, fi.Size(), size)
	}
	return nil
}
