package pkgmgr

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
)

// The files of a root that the tools' configuration takes from it are read
// and created through os.Root, so that a symbolic link in the root cannot
// lead reconcile to the host's files.

// copySources copies the apt source list files (absolute paths under root)
// into dst, under their base names, which apt reads by extension (.list,
// .sources).
func copySources(root string, files []string, dst string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening the root: %w", err)
	}
	defer r.Close()
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("apt source list %q is not an absolute path", f)
		}
		target := filepath.Join(dst, filepath.Base(f))
		if _, err := os.Lstat(target); err == nil {
			return fmt.Errorf("apt source lists %q: two files named %s", files, filepath.Base(f))
		}
		if err := copyOut(r, rootfs.Rel(f), target); err != nil {
			return fmt.Errorf("reading apt source list %s: %w", f, err)
		}
	}
	return nil
}

func copyOut(r *os.Root, rel, target string) error {
	in, err := rootfs.OpenRegular(r, rel)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mkdirUnder creates rel (slash path) under root.
func mkdirUnder(root, rel string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening the root: %w", err)
	}
	defer r.Close()
	if err := r.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("creating /%s under %s: %w", rel, root, err)
	}
	return nil
}

// releaseVer is the root's VERSION_ID ("3.0" on Azure Linux 3.0), for dnf's
// $releasever: dnf reads it from the root's rpm database, which a root built
// elsewhere, or Debian's rpm looking in ~/.rpmdb, does not offer. "" when the
// root has no readable os-release: then dnf guesses as it does.
func releaseVer(root string) string {
	r, err := os.OpenRoot(root)
	if err != nil {
		return ""
	}
	defer r.Close()
	for _, name := range []string{"etc/os-release", "usr/lib/os-release"} {
		f, err := rootfs.OpenRegular(r, name)
		if err != nil {
			continue
		}
		d, err := platform.ReadOSRelease(io.LimitReader(f, 64<<10))
		f.Close()
		if err == nil {
			return d.VersionID
		}
	}
	return ""
}

// privateDir makes a fresh directory only this user can enter, for the
// tools' configuration and downloads: os.MkdirTemp in the host's temp
// directory (TMPDIR, else /tmp) creates it exclusively under a random name,
// mode 0700. That keeps other users out of it but not from renaming it, or
// swapping it for a symbolic link, in a parent they can write: so the parent
// must belong to root or to this user and be writable by no one else, or be
// sticky (/tmp), where only the owner of an entry may rename it.
func privateDir(prefix string) (string, error) {
	parent := os.TempDir()
	if err := checkPrivateParent(parent); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", fmt.Errorf("creating a private directory for the package manager: %w", err)
	}
	return dir, nil
}

func checkPrivateParent(parent string) error {
	fi, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("temp directory for the package manager: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return fmt.Errorf("temp directory %s for the package manager is not a directory", parent)
	}
	owner := int(st.Uid) == 0 || int(st.Uid) == os.Geteuid()
	shared := fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0
	if !owner || shared {
		return fmt.Errorf("temp directory %s (TMPDIR) for the package manager is %s, owned by uid %d: other users could replace what is downloaded there; use a directory of root's, or a sticky one like /tmp",
			parent, fi.Mode(), st.Uid)
	}
	return nil
}
