package pkgmgr

import (
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgversion"
)

// runTool runs a fixture-building command and fails the test with its output.
func runTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// versionStrings spells vs as the repositories do.
func versionStrings(vs []pkgversion.Version) []string {
	var s []string
	for _, v := range vs {
		s = append(s, v.String())
	}
	return s
}

// hostState records the type, modification time and size of host paths
// the package managers would write with their default configuration, and of
// everything below those that are directories, so a test can prove its
// options kept them inside temporary directories.
type hostState map[string]string

func snapshot(paths ...string) hostState {
	s := hostState{}
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

func (s hostState) unchanged(t *testing.T) {
	t.Helper()
	now := snapshot(slices.Sorted(maps.Keys(s))...)
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

// onlyEntry checks that dir holds exactly the one file name.
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{name}) {
		t.Errorf("%s holds %v, want only %s", dir, names, name)
	}
}
