package pkgbuild

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// HostState records the type, modification time and size of host paths
// the package managers would write with their default configuration, and of
// everything below those that are directories, so a test can prove that a
// run on a test root left the host's package manager state alone.
type HostState map[string]string

// Snapshot records paths (see HostState).
func Snapshot(paths ...string) HostState {
	s := HostState{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			s[p] = "absent"
			continue
		}
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				s[q] = "unreadable: " + err.Error()
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				s[q] = "unreadable: " + err.Error()
				return nil
			}
			s[q] = fmt.Sprintf("%s mtime %s size %d", fi.Mode().Type(), fi.ModTime().Format("15:04:05.000000000"), fi.Size())
			return nil
		})
	}
	return s
}

// Unchanged fails t for every path that differs from the snapshot.
func (s HostState) Unchanged(t testing.TB) {
	t.Helper()
	now := Snapshot(slices.Sorted(maps.Keys(s))...)
	for _, p := range slices.Sorted(maps.Keys(now)) {
		if now[p] != s[p] {
			t.Errorf("host path %s changed: before %q, after %q", p, s[p], now[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s)) {
		if _, ok := now[p]; !ok {
			t.Errorf("host path %s is gone (was %s)", p, s[p])
		}
	}
}

// AptHostPaths are what apt-get and dpkg write with the default
// configuration; the directories are compared with all they hold.
func AptHostPaths() []string {
	return []string{
		"/etc/apt", "/etc/apt/sources.list.d",
		"/var/lib/apt", "/var/lib/apt/lists", "/var/lib/apt/extended_states",
		"/var/cache/apt", "/var/lib/dpkg", "/var/lib/dpkg/status", "/var/log/apt", "/var/log/dpkg.log",
	}
}

// DnfHostPaths are what dnf and rpm write with the default configuration
// (Debian's rpm keeps its database in ~/.rpmdb: its sqlite file, not the
// -shm and -wal files any reader's open touches, rpmbuild's among them).
// /var/tmp is not among them although rpmbuild uses it by default: other
// processes write there too.
func DnfHostPaths() []string {
	paths := []string{
		"/etc/dnf", "/etc/yum.repos.d", "/var/cache/dnf", "/var/cache/libdnf5",
		"/var/lib/dnf", "/var/lib/rpm", "/var/log/dnf.log", "/var/log/dnf.librepo.log",
		"/var/log/dnf.rpm.log", "/var/log/hawkey.log",
	}
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".rpmdb", "rpmdb.sqlite"))
	}
	return paths
}
