package pkgmgr

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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

// hostState records the modification time and size of host paths the
// package managers would write with their default configuration, so a test
// can prove its options kept them inside temporary directories.
type hostState map[string]string

func snapshot(paths ...string) hostState {
	s := hostState{}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			s[p] = "absent"
			continue
		}
		s[p] = fmt.Sprintf("mtime %s size %d", fi.ModTime().Format("15:04:05.000000000"), fi.Size())
	}
	return s
}

func (s hostState) unchanged(t *testing.T) {
	t.Helper()
	paths := make([]string, 0, len(s))
	for p := range s {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	now := snapshot(paths...)
	for _, p := range paths {
		if now[p] != s[p] {
			t.Errorf("host path %s changed: before %s, after %s", p, s[p], now[p])
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
