package pkgmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// dnf lists versions with "dnf repoquery" and a tab-separated query format
// (not "dnf list", whose columns wrap for long names), and downloads with
// "dnf download" (dnf-plugins-core) of the full name-epoch:version-release.arch,
// which leaves the rpm database alone and runs no scriptlet.
type dnf struct{ c *commander }

func (d *dnf) command() string         { return "dnf" }
func (d *dnf) format() platform.Format { return platform.RPM }

// dnfNotFound recognises dnf's answers that a package or version does not
// exist ("No package kubelet-0:1.34.2-1.azl3.x86_64 available.", "No match
// for argument: ..."), which no retry can change.
func dnfNotFound(out string) bool {
	return containsAny(out, "No package ", "No match for argument")
}

// dnfQueryFormat is one line per package (dnf adds the newline); a tab
// cannot occur in any field.
const dnfQueryFormat = "%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}\t%{location}\t%{downloadsize}"

func (d *dnf) records(ctx context.Context, name string, arch platform.Arch) ([]record, error) {
	// --available: a package installed on the node but gone from the
	// repositories cannot be downloaded. --arch narrows the output; the
	// parser checks the architecture again all the same.
	out, err := d.run(ctx, dnfNotFound, "-q", "repoquery", "--available", "--showduplicates",
		"--arch="+arch.In(platform.RPM), "--queryformat="+dnfQueryFormat, "--", name)
	if err != nil {
		return nil, err
	}
	recs, bad := parseRepoquery(out, name, arch)
	for _, err := range bad {
		d.c.log.WarnContext(ctx, "ignoring a version dnf offers", "package", name, "err", err)
	}
	return recs, nil
}

// parseRepoquery reads dnfQueryFormat lines and keeps those of package name
// built for arch. Other lines (messages some plugins print to stdout) are
// skipped; versions that do not parse are returned as errors beside the
// records.
func parseRepoquery(data []byte, name string, arch platform.Arch) ([]record, []error) {
	var (
		recs []record
		bad  []error
	)
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimRight(line, "\r\n"), "\t")
		if len(f) != 7 || f[0] != name || f[4] != arch.In(platform.RPM) {
			continue
		}
		evr := f[2] + "-" + f[3]
		if f[1] != "" && f[1] != "0" && f[1] != "(none)" {
			evr = f[1] + ":" + evr
		}
		v, err := pkgversion.Parse(platform.RPM, evr)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s %s: %w", name, f[4], err))
			continue
		}
		epoch := f[1]
		if epoch == "" || epoch == "(none)" {
			epoch = "0"
		}
		size, _ := strconv.ParseInt(f[6], 10, 64) // 0: unknown, not checked
		recs = append(recs, record{
			version: v,
			// The full NEVRA with the epoch leaves dnf nothing to guess: no
			// other version, no other architecture.
			spec: fmt.Sprintf("%s-%s:%s-%s.%s", name, epoch, f[2], f[3], f[4]),
			size: size,
		})
	}
	return recs, bad
}

// update expires and reloads the repository metadata. dnf refreshes expired
// metadata by itself; this catches a version published since the last load.
func (d *dnf) update(ctx context.Context, _ bool) error {
	if _, err := d.run(ctx, nil, "-q", "--refresh", "makecache"); err != nil {
		return fmt.Errorf("refreshing the dnf metadata: %w", err)
	}
	return nil
}

// download runs "dnf download", which writes into --destdir under the base
// name of the package's location in the repository.
func (d *dnf) download(ctx context.Context, rec record, arch platform.Arch, dir string) error {
	_, err := d.run(ctx, dnfNotFound, "-q", "download", "--destdir="+dir, "--arch="+arch.In(platform.RPM), "--", rec.spec)
	return err
}

func (d *dnf) run(ctx context.Context, final func(string) bool, args ...string) ([]byte, error) {
	var out []byte
	err := d.c.withPrivateDir(func(dir string) error {
		opts, err := rpmRootArgs(d.c, dir)
		if err != nil {
			return err
		}
		if !d.c.hostRoot() {
			// This plugin writes the host's /var/cache/dnf/packages.db
			// whatever the root.
			opts = append(opts, "--disableplugin=generate_completion_cache")
		}
		out, err = d.c.run(ctx, "", nil, final, "dnf", append(opts, args...)...)
		return err
	})
	return out, err
}

// rpmRootArgs are the options dnf and tdnf share: the repositories a fetch
// uses, and for a root other than the node its installroot, repository files,
// release version and an empty configuration file in dir (dnf falls back to
// the host's dnf.conf without one; the root's could load plugins from the
// image into the host's dnf).
func rpmRootArgs(c *commander, dir string) ([]string, error) {
	var opts []string
	if !c.hostRoot() {
		conf := filepath.Join(dir, "dnf.conf")
		if err := os.WriteFile(conf, []byte("[main]\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing dnf's private configuration: %w", err)
		}
		opts = append(opts, "--installroot="+c.root, "--config="+conf,
			"--setopt=reposdir="+filepath.Join(c.root, "etc", "yum.repos.d"))
		if v := releaseVer(c.root); v != "" {
			opts = append(opts, "--releasever="+v)
		}
	}
	for _, id := range c.repos {
		opts = append(opts, "--repo="+id)
	}
	return opts, nil
}
