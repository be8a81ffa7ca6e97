package reliability_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/platform"
)

// hugeSize is the size of the oversized manifest.
const hugeSize = 100 << 20

// writeHuge writes a syntactically valid manifest of hugeSize bytes: a
// components list that goes on and on.
func writeHuge(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("components:\n")
	n := len("components:\n")
	for i := 0; n < hugeSize; i++ {
		k, _ := fmt.Fprintf(w, "  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.34.%d-ubuntu24.04u1\"}\n", i)
		n += k
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// aliasBomb is a billion laughs (9^9 strings) whose root is the components
// list itself, so that a parser that expands aliases must expand it.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("l0: &l0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("components: *l8\n")
	return b.String()
}

// TestBadManifests feeds the real binary bad manifests in every mode: each
// exits 2 with a message naming the field, in bounded time, and the root
// (a baked image) is left exactly as it was, mtimes included.
func TestBadManifests(t *testing.T) {
	t.Parallel()
	c := newCrashCase(t, smallScenario(platform.Deb), "bake")
	root := copyRoot(t, c.start)
	run(t, nil, c.args(root)...).must(t, 0)
	before := snapshot(t, root)
	dir := t.TempDir()
	const entry = "  - tool: kubelet\n    distro: ubuntu-24.04\n    packageVersion: \"1.34.10-ubuntu24.04u1\"\n"
	const kubectl = "  - tool: kubectl\n    distro: ubuntu-24.04\n    packageVersion: \"1.34.10-ubuntu24.04u1\"\n"
	cases := []struct {
		name    string
		content string // "" with a file name that is not written: missing
		want    []string
	}{
		{"unquoted-1.30", "components:\n  - tool: azure-acr-credential-provider\n    distro: ubuntu-24.04\n    packageVersion: \"1.30.9-ubuntu24.04u1\"\n    k8sVersion: 1.30\n",
			[]string{"components[0].k8sVersion", "quote it"}},
		{"unknown-field", "components:\n" + entry + "    k8sversion: \"1.34.10\"\n" + kubectl,
			[]string{"components[0].k8sversion", `unknown field "k8sversion"`}},
		{"bad-package-version", "components:\n  - tool: kubelet\n    distro: ubuntu-24.04\n    packageVersion: latest\n" + kubectl,
			[]string{`components[0].packageVersion`, `"latest"`}},
		{"unknown-distro", "components:\n  - tool: kubelet\n    distro: windows-2022\n    packageVersion: \"1.34.10-1\"\n",
			[]string{"components[0].distro", `unknown distro id "windows"`}},
		{"tool-escapes", "components:\n  - tool: ../kubelet\n    distro: ubuntu-24.04\n    packageVersion: \"1.34.10-ubuntu24.04u1\"\n",
			[]string{"components[0].tool", `"../kubelet" is not a valid name`}},
		{"duplicate-key", "components:\n" + entry + "    distro: ubuntu-22.04\n" + kubectl,
			[]string{"components[0].distro", "duplicate"}},
		{"relative-target", "tools:\n  kubectl:\n    target: opt/bin/kubectl\ncomponents:\n" + entry + kubectl,
			[]string{"tools.kubectl.target", "absolute"}},
		{"three-mistakes", "tools:\n  kubectl:\n    target: opt/bin/kubectl\ncomponents:\n  - tool: kubelet\n    distro: ubuntu-24.04\n    packageVersion: latest\n  - tool: kubectl\n    distro: ubuntoo-24.04\n    packageVersion: \"1.34.10-ubuntu24.04u1\"\n",
			[]string{"components[0].packageVersion", "components[1].distro", "tools.kubectl.target"}},
		{"kubelet-kubectl-mismatch", "components:\n" + entry,
			[]string{"kubelet serves [1.34.10] but kubectl serves []"}},
		{"not-yaml", "components:\n  - tool: kubelet\n   distro: [\n", []string{"not valid YAML"}},
		{"two-documents", "components:\n" + entry + kubectl + "---\ncomponents: []\n", []string{"more than one YAML document"}},
		{"empty", "\n", []string{"empty"}},
		{"alias-bomb", aliasBomb(), []string{"components", "aliases are not allowed"}},
		{"deep-nesting", "components: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n", []string{"exceeded max depth"}},
		{"100MB", "(written by writeHuge)", []string{"larger than"}},
		{"missing", "", []string{"no such file"}},
	}
	modes := [][]string{
		{"--mode=bake"},
		{"--mode=boot", "--k8s-version", "1.35.7"},
		{"--mode=verify"},
		{"--dry-run"},
	}
	runs := 0
	var slow []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".yaml")
			switch tc.name {
			case "100MB":
				writeHuge(t, p)
			case "missing":
			default:
				writeFile(t, p, []byte(tc.content), 0o644)
			}
			var worst time.Duration
			for _, mode := range modes {
				args := append(append([]string{}, mode...), "--root", root, "--arch", "amd64", p)
				r := run(t, nil, args...)
				runs++
				worst = max(worst, r.dur)
				if r.killed || r.code != 2 {
					t.Errorf("%s: want exit 2, got %s", strings.Join(mode, " "), r)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%s: stderr lacks %q:\n%s", strings.Join(mode, " "), w, r.stderr)
					}
				}
				if r.stdout != "" {
					t.Errorf("%s: a rejected manifest printed on stdout:\n%s", strings.Join(mode, " "), r.stdout)
				}
				// A generous guard only: the numbers are reported, not asserted.
				if r.dur > 30*time.Second {
					t.Errorf("%s: took %s", strings.Join(mode, " "), r.dur)
				}
			}
			if d := diff(before, snapshot(t, root), true); len(d) > 0 {
				t.Fatalf("a rejected manifest changed the root:\n  %s", strings.Join(d, "\n  "))
			}
			switch tc.name {
			case "100MB", "alias-bomb", "deep-nesting":
				slow = append(slow, fmt.Sprintf("%s %s", tc.name, worst.Round(time.Millisecond)))
			}
			t.Logf("exit 2 in every mode, slowest %s: %s", worst.Round(time.Millisecond), firstLine(strings.TrimPrefix(run(t, nil, "--mode=bake", "--root", root, p).stderr, "reconcile: ")))
		})
	}
	report("4 manifests", "bad manifests: %d bad manifests × %d modes = %d runs of the binary, each exit 2 naming the field, the root untouched (mtimes included); slowest run: %s", len(cases), len(modes), runs, strings.Join(slow, ", "))
}
