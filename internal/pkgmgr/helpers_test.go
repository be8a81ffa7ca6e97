package pkgmgr

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// requireTools stops a test that needs real tools the machine lacks: a skip
// on a workstation, a failure in CI (CI=true), where a skip would hide that
// nothing was tested.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("tools not installed: %s", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: they are required)")
	}
	t.Skip(msg)
}

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

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; fixtures need it exact.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
