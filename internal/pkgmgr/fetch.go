package pkgmgr

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
)

// Fetch is what bake and boot call: it finds want among the versions the
// repositories offer for arch, refreshing the metadata once if the manager
// is an Updater and want is missing, downloads it into a private directory,
// checks it there by its own metadata, and copies it into cacheDir (an
// absolute path under root, created if missing) through root. It returns the
// package's root-relative slash path ("opt/kubelet/downloads/kubelet_….deb").
//
// The package manager never gets a path inside the root: a user who can
// write there could swap the cache directory for a symlink, and the tool,
// running as root, would write wherever it leads. It downloads into a
// private directory (see privateDir), removed whatever happens.
//
// A version not offered gives an error wrapping ErrVersionNotOffered (a
// *NotOfferedError). A file that is not the package asked for — another
// name, version or architecture, or no package at all — is an error naming
// what was asked and what came, and never reaches the cache.
func Fetch(ctx context.Context, m Manager, name string, want pkgversion.Version, arch platform.Arch, root *os.Root, cacheDir string) (rel string, err error) {
	ctx, cancel, err := bound(ctx, m, want.Format, name+"="+want.String())
	if err != nil {
		return "", err
	}
	defer cancel()
	if !path.IsAbs(cacheDir) {
		return "", fmt.Errorf("cache directory %q is not an absolute path", cacheDir)
	}
	got, err := find(ctx, m, name, want, arch, func(offered []pkgversion.Version) (pkgversion.Version, bool) {
		return pick(offered, want)
	})
	if err != nil {
		return "", err
	}
	private, err := privateDir("reconcile-fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(private)
	file, err := m.Download(ctx, name, got, arch, private)
	if err != nil {
		return "", fmt.Errorf("downloading %s=%s (%s) with %s: %w", name, got, arch, m.Name(), err)
	}
	if err := checkPackage(file, m.Name(), name, got, arch); err != nil {
		return "", err
	}
	rel = path.Join(rootfs.Rel(cacheDir), filepath.Base(file))
	if err := copyInto(root, rel, file); err != nil {
		return "", fmt.Errorf("putting %s=%s into %s: %w", name, got, cacheDir, err)
	}
	return rel, nil
}

// Newest returns the newest revision the repositories offer of name whose
// upstream version is upstream, for arch: "1.34.1" finds 1.34.1-2 beside
// 1.34.1-1, never 1.34.10-1 nor 1.34.1~rc.1-1 (upstream versions are compared
// by dpkg/rpm rules, so a pre-release is another upstream version), and on
// amd64 never a revision built only for arm64. The metadata is refreshed
// once if nothing matches; a miss is a *NotOfferedError listing what the
// minor line offers.
func Newest(ctx context.Context, m Manager, name string, upstream string, arch platform.Arch) (pkgversion.Version, error) {
	format := platform.Deb
	if own, ok := m.(managerOptions); ok {
		format = own.format()
	}
	// Parsed as a version without revision, so that a bad upstream version
	// is refused before any command runs.
	want, err := pkgversion.Parse(format, upstream)
	if err != nil || want.Revision != "" || want.Epoch != 0 {
		return pkgversion.Version{}, fmt.Errorf("%s: %q is not an upstream version (no epoch, no revision): %v", name, upstream, err)
	}
	ctx, cancel, err := bound(ctx, m, format, name+"="+upstream)
	if err != nil {
		return pkgversion.Version{}, err
	}
	defer cancel()
	return find(ctx, m, name, want, arch, func(offered []pkgversion.Version) (pkgversion.Version, bool) {
		var best pkgversion.Version
		found := false
		for _, v := range offered {
			same := pkgversion.Version{Format: v.Format, Epoch: v.Epoch, Upstream: upstream, Revision: v.Revision}
			if pkgversion.Equal(v, same) && (!found || pkgversion.Compare(v, best) > 0) {
				best, found = v, true
			}
		}
		return best, found
	})
}

// bound applies the deadline of a manager New returned to a whole Fetch or
// Newest, and refuses a version of the other format.
func bound(ctx context.Context, m Manager, format platform.Format, what string) (context.Context, context.CancelFunc, error) {
	own, ok := m.(managerOptions)
	if !ok {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, nil
	}
	if own.format() != format {
		return nil, nil, fmt.Errorf("%s is a %s version; %s handles %s packages", what, format, m.Name(), own.format())
	}
	ctx, cancel := context.WithTimeout(ctx, own.deadline())
	return ctx, cancel, nil
}

// find lists what is offered and lets match choose, refreshing the metadata
// once when it finds nothing.
func find(ctx context.Context, m Manager, name string, want pkgversion.Version, arch platform.Arch, match func([]pkgversion.Version) (pkgversion.Version, bool)) (pkgversion.Version, error) {
	offered, err := m.Versions(ctx, name, arch)
	if err != nil {
		return pkgversion.Version{}, fmt.Errorf("listing the versions of %s with %s: %w", name, m.Name(), err)
	}
	got, ok := match(offered)
	if !ok {
		if u, isUpdater := m.(Updater); isUpdater {
			if err := u.Update(ctx, want); err != nil {
				return pkgversion.Version{}, fmt.Errorf("%s=%s is not in the %s metadata, and refreshing it failed: %w", name, want, m.Name(), err)
			}
			if offered, err = m.Versions(ctx, name, arch); err != nil {
				return pkgversion.Version{}, fmt.Errorf("listing the versions of %s with %s: %w", name, m.Name(), err)
			}
			got, ok = match(offered)
		}
	}
	if !ok {
		return pkgversion.Version{}, notOffered(m, want.Format, name, want, arch, offered)
	}
	return got, nil
}

// managerOptions is what Fetch learns from the managers New returns (other
// implementations, such as fakes, do without).
type managerOptions interface {
	deadline() time.Duration
	format() platform.Format
}

// checkPackage opens what the tool downloaded and checks it is the package
// asked for, by the package's own metadata: name, version by dpkg/rpm rules,
// and an architecture that runs where arch runs.
func checkPackage(file, tool, name string, want pkgversion.Version, arch platform.Arch) error {
	asked := fmt.Sprintf("%s=%s (%s)", name, want, arch.In(want.Format))
	p, err := pkgfile.Open(file)
	if err != nil {
		return fmt.Errorf("%s returned %s for %s, which is not a package: %w", tool, filepath.Base(file), asked, err)
	}
	if p.Format != want.Format || p.Name != name || !pkgversion.Equal(p.Version, want) || !p.Arch.Runs(arch) {
		return fmt.Errorf("%s returned %s for %s: it is %s %s=%s (%s); removed", tool, filepath.Base(file), asked, p.Format, p.Name, p.Version, p.RawArch)
	}
	return nil
}

// copyInto copies file (a host path in the private directory) to rel under
// root, atomically. A rename cannot cross from outside the root into it
// through os.Root, and the copy also works when /tmp is another filesystem.
func copyInto(root *os.Root, rel, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return fmt.Errorf("creating /%s: %w", path.Dir(rel), err)
	}
	_, err = rootfs.WriteAtomic(root, rel, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
	return err
}
