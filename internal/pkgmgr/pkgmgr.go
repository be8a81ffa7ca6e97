// Package pkgmgr lists and downloads packages with the distro's package
// manager (apt-get for deb; dnf, else tdnf, for rpm) and the repositories of
// the root it works on, so that bake can fill a cache and boot can fetch a
// version neither the extracted binaries nor the cache hold. It only ever
// downloads: nothing is installed, no package database is changed and no
// maintainer script runs. Downloads land in a private directory and reach
// the root only through an os.Root, after the package's own metadata says
// it is the one asked for.
//
// Versions are picked by comparing them as package versions
// (pkgversion.Equal), never by matching strings, so 1.34.1 never selects
// 1.34.10 and 1.34.10 never selects 1.34.10~rc.1.
package pkgmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Manager lists and downloads packages with a package manager and the
// repository configuration of the root it works on. The managers New returns
// are safe for concurrent use (the tools' own locks permitting).
type Manager interface {
	// Name is the command, "apt-get", "dnf" or "tdnf", for plan text.
	Name() string
	// Versions lists what the repositories offer for name and arch, sorted
	// oldest first, without duplicates.
	Versions(ctx context.Context, name string, arch platform.Arch) ([]pkgversion.Version, error)
	// Download fetches exactly name=version for arch into dir, an empty
	// directory that only the caller can write (Fetch makes one), and returns
	// the file's path: the one regular file the tool left there. No install,
	// no dpkg/rpm database change, no scripts.
	Download(ctx context.Context, name string, version pkgversion.Version, arch platform.Arch, dir string) (string, error)
}

// Updater is implemented by managers whose repository metadata can be stale
// (apt's lists are only refreshed by "apt-get update"; images often ship
// without them). Fetch and Newest call Update once, and only when the wanted
// version is not in the metadata, so a node whose metadata is current makes
// no extra network round trip.
type Updater interface {
	// Update refreshes the metadata of the configured sources (Options.Sources
	// or Options.Repos, else all), adding Options.TestingSources when want
	// is a pre-release (its upstream version has a '~').
	Update(ctx context.Context, want pkgversion.Version) error
}

// Command is one run of a package manager.
type Command struct {
	Dir  string   // working directory; "" for the current one
	Env  []string // KEY=value added to reconcile's environment
	Name string
	Args []string
}

// Runner runs a command and returns its standard output. A failure should
// be a *CommandError.
type Runner interface {
	Run(ctx context.Context, c Command) (stdout []byte, err error)
}

// Options configure a Manager. The zero value is what production uses on
// the node itself.
type Options struct {
	// Runner runs the package manager; nil runs real commands.
	Runner Runner
	// Root is the host path of --root, absolute; "" means "/". With "/"
	// the tools run as an administrator would run them, with the node's own
	// configuration, proxies and credentials. With any other root they use
	// the root's sources, lists, caches and package database and nothing of
	// the host's: apt runs with Dir set to the root and reads no apt.conf at
	// all (neither the host's, whose hooks write the host's state, nor the
	// root's, whose hooks would run the image's commands on the host); dnf and
	// tdnf run with --installroot, the root's repository files, an empty
	// dnf.conf and the release version from the root's os-release.
	Root string
	// Sources are the apt source list files (paths under Root, such as
	// /etc/apt/sources.list.d/microsoft-prod.list) that Update refreshes;
	// empty refreshes every source of the root. The lists of other sources
	// are kept, not cleaned up.
	Sources []string
	// TestingSources are refreshed too when the wanted version is a
	// pre-release (1.35.0~rc.1), as the seed adds its testing list.
	TestingSources []string
	// Repos are the dnf/tdnf repository ids every command uses (--repo);
	// empty uses every enabled repository.
	Repos []string
	// ExtraArgs go right after the command name, before the subcommand
	// (apt "-o Key=Value", dnf "--setopt=...").
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

// ErrNoPackageManager is wrapped by New's error when the host has none of
// the tools for a format.
var ErrNoPackageManager = errors.New("no package manager")

// New returns the manager for a package format: apt-get for deb; for rpm,
// dnf where it is installed, else tdnf (Azure Linux OS Guard images carry
// only tdnf). The tools are looked for in the host's PATH, also for a root
// other than "/": they run on the host and work on the root.
func New(format platform.Format, opts Options) (Manager, error) {
	if opts.Root != "" && !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("package manager root %q is not an absolute path", opts.Root)
	}
	if strings.ContainsAny(opts.Root, "\"\n;") {
		// apt.conf cannot quote these.
		return nil, fmt.Errorf("package manager root %q holds a quote, a semicolon or a line break", opts.Root)
	}
	c := newCommander(opts)
	switch format {
	case platform.Deb:
		if len(c.repos) > 0 {
			return nil, fmt.Errorf("repository ids %q are for dnf; apt takes source list files", c.repos)
		}
		return &manager{c: c, tool: &apt{c: c}}, nil
	case platform.RPM:
		if len(c.sources)+len(c.testing) > 0 {
			return nil, fmt.Errorf("source list files %q are for apt; dnf takes repository ids", append(slices.Clone(c.sources), c.testing...))
		}
		if _, err := exec.LookPath("dnf"); err == nil {
			return &manager{c: c, tool: &dnf{c: c}}, nil
		}
		if _, err := exec.LookPath("tdnf"); err == nil {
			return &manager{c: c, tool: &tdnf{c: c}}, nil
		}
		return nil, fmt.Errorf("%w for rpm packages: neither dnf nor tdnf is in PATH (%s)", ErrNoPackageManager, os.Getenv("PATH"))
	}
	return nil, fmt.Errorf("%w for package format %q (want %q or %q)", ErrNoPackageManager, format, platform.Deb, platform.RPM)
}

// tool is what differs between apt-get, dnf and tdnf: how each lists,
// downloads and refreshes. manager does the rest the same way for all.
type tool interface {
	// command is the tool's name, for Manager.Name.
	command() string
	format() platform.Format
	// records lists what the repositories offer of name (already checked
	// by checkName) for arch.
	records(ctx context.Context, name string, arch platform.Arch) ([]record, error)
	// download runs the tool's download of rec for arch into dir, which
	// exists and is empty; downloadInto checks the result.
	download(ctx context.Context, rec record, arch platform.Arch, dir string) error
	// update refreshes the repository metadata, with the testing sources
	// when pre is set.
	update(ctx context.Context, pre bool) error
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

func (m *manager) Update(ctx context.Context, want pkgversion.Version) error {
	ctx, cancel := m.c.withDeadline(ctx)
	defer cancel()
	return m.tool.update(ctx, strings.Contains(want.Upstream, "~"))
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

// downloadInto runs a tool's download of rec into dir, which must be empty,
// and checks that the tool left exactly one regular file there, of the size
// the repository announced (0: unknown). The name the tool chose is not
// trusted: Fetch checks the package by its own metadata.
func downloadInto(dir string, rec record, download func() error) (string, error) {
	if entries, err := os.ReadDir(dir); err != nil {
		return "", fmt.Errorf("reading the download directory: %w", err)
	} else if len(entries) != 0 {
		return "", fmt.Errorf("download directory %s is not empty", dir)
	}
	if err := download(); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("reading the download directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(entries) != 1 {
		return "", fmt.Errorf("the download of %s left %d files, want one: %q", rec.spec, len(entries), names)
	}
	p := filepath.Join(dir, names[0])
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("checking the downloaded file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("downloaded %s is not a regular file (%s)", p, fi.Mode().Type())
	}
	if rec.size > 0 && fi.Size() != rec.size {
		return "", fmt.Errorf("downloaded %s has %d bytes, the repository says %d", p, fi.Size(), rec.size)
	}
	return p, nil
}
