package manifest_test

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/testreport"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/manifests"
)

// want is one expected problem, written in an invalid-*.yaml file as
//
//	# want: components[2].packageVersion: "latest" is not
//
// that is the problem's path ("-" for the whole document), then a fragment
// of its message.
type want struct{ path, fragment string }

// header reads the leading comment block of a testdata file.
type header struct {
	wants       []want
	schemaValid bool // "# schema: valid": a rule JSON Schema cannot express
}

func readHeader(t *testing.T, data []byte) header {
	t.Helper()
	var h header
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if rest, ok := strings.CutPrefix(line, "want:"); ok {
			p, frag, ok := strings.Cut(strings.TrimSpace(rest), ": ")
			if !ok {
				t.Fatalf("bad want line %q: expected 'want: PATH: FRAGMENT'", line)
			}
			if p == "-" {
				p = ""
			}
			h.wants = append(h.wants, want{p, frag})
		}
		if strings.HasPrefix(line, "schema: valid") {
			h.schemaValid = true
		}
	}
	return h
}

func testdata(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/%s: %v", pattern, err)
	}
	return files
}

func TestValidFiles(t *testing.T) {
	t.Parallel()
	for _, file := range testdata(t, "valid-*.yaml") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			m, err := manifest.Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkEntries(t, m)
		})
	}
}

func TestEmbedded(t *testing.T) {
	t.Parallel()
	m, err := manifest.Parse(manifests.Name, manifests.Components)
	if err != nil {
		t.Fatalf("the embedded manifest does not parse: %v", err)
	}
	checkEntries(t, m)
	if got, want := m.Distros(), []string{"azurelinux-3.0", "ubuntu-20.04", "ubuntu-22.04", "ubuntu-24.04", "ubuntu-26.04"}; !slices.Equal(got, want) {
		t.Errorf("Distros() = %v, want %v", got, want)
	}
	if !strings.HasPrefix(string(manifests.Components), "# yaml-language-server: $schema=../schema/components.schema.json\n") {
		t.Error("the embedded manifest does not point editors at the schema on its first line")
	}
	// What images carry: the credential provider where its packages exist,
	// runc and containerd where the images have them from packages.
	others := map[string][]string{
		"ubuntu-20.04":   {"runc"},
		"ubuntu-22.04":   {"azure-acr-credential-provider", "runc", "containerd"},
		"ubuntu-24.04":   {"azure-acr-credential-provider", "runc", "containerd"},
		"ubuntu-26.04":   nil,
		"azurelinux-3.0": {"azure-acr-credential-provider", "containerd"},
	}
	// Every distro and arch has, for every cluster version its kubelet
	// serves (latest and previous patch of each minor), kubelet, kubectl and
	// each of its other tools.
	for _, ds := range m.Distros() {
		d, err := platform.ParseDistro(ds)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range platform.Arches {
			entries := m.Entries(d, a)
			want := append([]string{"kubelet", "kubectl"}, others[ds]...)
			if got := manifest.Tools(entries); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
				t.Errorf("%s %s: tools %v, want %v", ds, a, got, want)
			}
			kubelets := manifest.Served(entries, "kubelet")
			if len(kubelets) < 2 || len(kubelets)%2 != 0 {
				t.Errorf("%s %s: kubelet serves %v: want the latest and the previous patch of each minor", ds, a, kubelets)
			}
			for _, v := range kubelets {
				for _, tool := range want {
					if _, ok := manifest.Resolve(entries, tool, semver.MustParse(v)); !ok {
						t.Errorf("%s %s: boot for %s resolves no %s", ds, a, v, tool)
					}
				}
			}
		}
	}
	// The previous patch is served from the image too.
	e, ok := manifest.Resolve(m.Entries(platform.Distro{ID: "ubuntu", VersionID: "24.04"}, platform.ARM64), "azure-acr-credential-provider", semver.MustParse("1.34.9"))
	if !ok || e.Version.String() != "1.34.13-ubuntu24.04u1" {
		t.Errorf("credential provider for 1.34.9: %v %v", e.Version, ok)
	}
}

// checkEntries asserts what every valid manifest gives: entries with every
// default applied, in manifest order, that name their component.
func checkEntries(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	total := 0
	for _, ds := range m.Distros() {
		d, err := platform.ParseDistro(ds)
		if err != nil {
			t.Fatalf("Distros() lists %q: %v", ds, err)
		}
		for _, a := range platform.Arches {
			last := -1
			for _, e := range m.Entries(d, a) {
				total++
				if e.Index <= last {
					t.Errorf("%s: entries out of manifest order", e.ID())
				}
				last = e.Index
				c := m.Components[e.Index]
				if e.Tool != c.Tool || e.Distro != d || e.Arch != a || e.Version.String() != strings.TrimPrefix(cmp.Or(c.PackageVersion, c.Version), "0:") {
					t.Errorf("%s does not match components[%d] %+v", e.ID(), e.Index, c)
				}
				if e.Package == "" || e.CacheDir == "" || len(e.BinaryPaths) == 0 || e.Target == "" || e.ExitCode == 0 || len(e.VersionArgs) == 0 {
					t.Errorf("%s: a default is missing: %+v", e.ID(), e)
				}
				if e.Versioned != "/opt/bin/"+e.Tool+"-"+e.Version.Upstream {
					t.Errorf("%s: Versioned = %q", e.ID(), e.Versioned)
				}
				if e.Version.Format != d.Format() {
					t.Errorf("%s: version format %s for a %s distro", e.ID(), e.Version.Format, d.Format())
				}
				k, err := e.Version.Kube()
				if err != nil {
					t.Fatalf("%s: %v", e.ID(), err)
				}
				if c.K8sVersion == "" && (!e.Exact() || !e.Serves(k) || e.K8s != k.String()) {
					t.Errorf("%s: without k8sVersion it serves exactly %s, got K8s %q exact %v", e.ID(), k, e.K8s, e.Exact())
				}
				if !strings.Contains(e.ID(), fmt.Sprintf("components[%d] (%s %s %s %s)", e.Index, e.Tool, d, a, e.Version)) {
					t.Errorf("ID() = %q", e.ID())
				}
			}
		}
	}
	if total == 0 {
		t.Error("a valid manifest with no entries for any distro and arch")
	}
}

func TestInvalidFiles(t *testing.T) {
	t.Parallel()
	files := testdata(t, "invalid-*.yaml")
	if len(files) < 30 {
		t.Errorf("only %d invalid manifests", len(files))
	}
	t.Cleanup(func() {
		if !t.Failed() {
			testreport.Write("bad-manifests", fmt.Sprintf("bad manifests: %d invalid manifests in internal/manifest/testdata rejected, every expected problem reported at once with its field path, entry and line, nothing extra", len(files))+"\n")
		}
	})
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			h := readHeader(t, data)
			if len(h.wants) == 0 {
				t.Fatal("no '# want:' line")
			}
			start := time.Now()
			m, err := manifest.Load(file)
			// A guard against a hang on hostile input, not a speed test.
			if elapsed := time.Since(start); elapsed > 30*time.Second {
				t.Errorf("Load took %v", elapsed)
			}
			if err == nil {
				t.Fatalf("Load succeeded with %d components, want %d problem(s)", len(m.Components), len(h.wants))
			}
			merr := asError(t, err)
			if merr.File != file {
				t.Errorf("Error.File = %q, want %q", merr.File, file)
			}
			checkProblems(t, data, merr.Problems, h.wants)
			if !strings.Contains(err.Error(), file) {
				t.Errorf("Error() %q does not name the file", err)
			}
		})
	}
}

func asError(t *testing.T, err error) *manifest.Error {
	t.Helper()
	var merr *manifest.Error
	if !errors.As(err, &merr) {
		t.Fatalf("error %T %v is not a *manifest.Error", err, err)
	}
	if len(merr.Problems) == 0 {
		t.Fatalf("a *manifest.Error without problems: %v", err)
	}
	return merr
}

// checkProblems matches problems to wants one to one (so all problems are
// reported, and nothing more), and checks what every problem must carry.
func checkProblems(t *testing.T, data []byte, problems []manifest.Problem, wants []want) {
	t.Helper()
	var report strings.Builder
	for _, p := range problems {
		fmt.Fprintf(&report, "\n  %s", p)
	}
	used := make([]bool, len(problems))
	for _, w := range wants {
		found := false
		for i, p := range problems {
			if !used[i] && p.Path == w.path && strings.Contains(p.Msg, w.fragment) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("no problem %s: ...%s...; got:%s", w.path, w.fragment, report.String())
		}
	}
	for i, p := range problems {
		if !used[i] {
			t.Errorf("unexpected problem %s", p)
		}
	}
	nlines := bytes.Count(data, []byte("\n")) + 1
	lastLine := 0
	for _, p := range problems {
		if p.Msg == "" {
			t.Errorf("problem without a message: %+v", p)
		}
		if p.Path != "" && p.Line == 0 {
			t.Errorf("problem %s has no line", p)
		}
		if p.Line < 0 || p.Line > nlines {
			t.Errorf("problem %s: line %d of a %d-line file", p, p.Line, nlines)
		}
		if p.Line != 0 {
			if p.Line < lastLine {
				t.Errorf("problem %s: not in file order", p)
			}
			lastLine = p.Line
		}
		if inComponent.MatchString(p.Path) && p.Entry == "" && !notMapping(p) {
			t.Errorf("problem %s does not name its entry", p)
		}
		if !inComponent.MatchString(p.Path) && p.Entry != "" {
			t.Errorf("problem %s names an entry outside components", p)
		}
		if strings.Contains(p.String(), "%!") {
			t.Errorf("bad format verb in %q", p)
		}
	}
}

var inComponent = regexp.MustCompile(`^components\[\d+\]`)

// notMapping is a problem with a component that is not a mapping, so has no
// tool, distro or packageVersion to name it by.
func notMapping(p manifest.Problem) bool {
	return regexp.MustCompile(`^components\[\d+\]$`).MatchString(p.Path) &&
		(strings.Contains(p.Msg, "expected a mapping") || strings.Contains(p.Msg, "aliases"))
}

// TestProblemDetails pins the exact problem for a few cases: the line, the
// entry as written and the rendered message.
func TestProblemDetails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string // Problem.String()
	}{
		{
			name: "bad package version",
			yaml: `components:
  - tool: kubelet
    distro: ubuntu-24.04
    packageVersion: "1.34.10-ubuntu24.04u1"
  - tool: kubectl
    distro: ubuntu-24.04
    packageVersion: "1.34.10-ubuntu24.04u1"
  - tool: kubelet
    distro: ubuntu-24.04
    packageVersion: "latest"
`,
			want: []string{`line 10: components[2].packageVersion (kubelet ubuntu-24.04 latest): not a package version: "latest": upstream version must start with a digit`},
		},
		{
			name: "unquoted",
			yaml: `components:
  - tool: azure-acr-credential-provider
    distro: ubuntu-24.04
    packageVersion: "1.30.9-ubuntu24.04u1"
    k8sVersion: 1.30
`,
			want: []string{`line 5: components[0].k8sVersion (azure-acr-credential-provider ubuntu-24.04 1.30.9-ubuntu24.04u1): unquoted number 1.30: YAML reads it as 1.3, not the string "1.30"; quote it`},
		},
		{
			name: "missing field points at its component",
			yaml: `components:
  - tool: kubelet
    distro: ubuntu-24.04
`,
			want: []string{`line 2: components[0].packageVersion (kubelet ubuntu-24.04): missing: this field is required`},
		},
		{
			name: "three mistakes in file order",
			yaml: `tools:
  kubectl:
    target: opt/bin/kubectl
components:
  - tool: kubelet
    distro: ubuntu-24.04
    packageVersion: "latest"
  - tool: kubectl
    distro: ubuntoo-24.04
    packageVersion: "1.34.10-ubuntu24.04u1"
`,
			want: []string{
				`line 3: tools.kubectl.target: "opt/bin/kubectl" must be an absolute path`,
				`line 7: components[0].packageVersion (kubelet ubuntu-24.04 latest): not a package version: "latest": upstream version must start with a digit`,
				`line 9: components[1].distro (kubectl ubuntoo-24.04 1.34.10-ubuntu24.04u1): unknown distro id "ubuntoo" in "ubuntoo-24.04": known ids are almalinux, amzn, azurelinux, centos, debian, fedora, mariner, rhel, rocky, ubuntu`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := manifest.Parse("m.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var got []string
			for _, p := range asError(t, err).Problems {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if len(tt.want) == 1 && err.Error() != "manifest m.yaml: "+tt.want[0] {
				t.Errorf("Error() = %q", err)
			}
			if len(tt.want) > 1 && !strings.HasPrefix(err.Error(), fmt.Sprintf("manifest m.yaml: %d problems:\n  ", len(tt.want))) {
				t.Errorf("Error() = %q", err)
			}
		})
	}
}

// TestHostileInput: documents built to exhaust time or memory are refused
// quickly.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	big := "components:\n" + strings.Repeat("  - tool: kubelet\n    distro: ubuntu-24.04\n    packageVersion: \"1.34.10-ubuntu24.04u1\"\n", manifest.MaxSize/60)
	tests := []struct {
		name string
		data string
		want string
	}{
		{"nested flow 10k", strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000), ""},
		{"nested flow 100k", "components: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), ""},
		{"nested block 10k", nestedBlock(10_000), ""},
		{"nested mappings in components", "components:\n" + strings.Repeat("- {a: ", 5_000) + "x" + strings.Repeat("}", 5_000) + "\n", ""},
		{"more than 1 MiB", big, "larger than 1048576 bytes"},
		{"alias bomb", aliasBomb(), "anchors and aliases"},
		{"many problems", "components:\n" + strings.Repeat("  - tool: Kubelet\n    distro: windows-11\n    packageVersion: latest\n", 5000), "not a valid name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			m, err := manifest.Parse("hostile.yaml", []byte(tt.data))
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("Parse accepted it: %d components", len(m.Components))
			}
			merr := asError(t, err)
			if elapsed > 3*time.Second {
				t.Errorf("Parse took %v", elapsed)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<30 {
				t.Errorf("Parse allocated %d MiB", alloc>>20)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not say %q: %.500s", tt.want, err)
			}
			_ = merr
		})
	}
}

func nestedBlock(depth int) string {
	var b strings.Builder
	b.WriteString("components:\n")
	for i := range depth {
		b.WriteString(strings.Repeat(" ", i+2))
		b.WriteString("- \n")
	}
	return b.String()
}

func aliasBomb() string {
	var b strings.Builder
	b.WriteString("components:\n- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "- &a%d [", i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func TestLoadBigFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "big.yaml")
	data := "components:\n" + strings.Repeat("# padding padding padding padding padding padding padding padding\n", manifest.MaxSize/60)
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := manifest.Load(file)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a %d-byte file: %v", len(data), err)
	}
	// Exactly MaxSize is allowed.
	valid, err := os.ReadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	padded := append(valid, bytes.Repeat([]byte("#"), manifest.MaxSize-len(valid))...)
	if _, err := manifest.Parse("max.yaml", padded); err != nil {
		t.Errorf("a manifest of exactly MaxSize bytes: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := manifest.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	merr := asError(t, err)
	if !strings.Contains(err.Error(), "nope.yaml") || !strings.Contains(merr.Problems[0].Msg, "no such file") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestEntriesDefaults(t *testing.T) {
	t.Parallel()
	m, err := manifest.Parse(manifests.Name, manifests.Components)
	if err != nil {
		t.Fatal(err)
	}
	ubuntu := platform.Distro{ID: "ubuntu", VersionID: "24.04"}
	tests := []struct {
		tool, version, k8s string
		package_, cache    string
		paths              []string
		versioned, target  string
		exit               int
		args               []string
	}{
		{"kubelet", "1.34.10-ubuntu24.04u1", "1.34.10", "kubelet", "/opt/kubelet/downloads",
			[]string{"usr/bin/kubelet", "usr/local/bin/kubelet"}, "/opt/bin/kubelet-1.34.10", "/opt/bin/kubelet", 121, []string{"--version"}},
		{"kubectl", "1.35.7-ubuntu24.04u1", "1.35.7", "kubectl", "/opt/kubectl/downloads",
			[]string{"usr/bin/kubectl", "usr/local/bin/kubectl"}, "/opt/bin/kubectl-1.35.7", "/opt/bin/kubectl", 122, []string{"version", "--client"}},
		{"azure-acr-credential-provider", "1.34.13-ubuntu24.04u1", "1.34", "azure-acr-credential-provider", "/opt/azure-acr-credential-provider/downloads",
			[]string{"usr/bin/azure-acr-credential-provider", "usr/local/bin/azure-acr-credential-provider"},
			"/opt/bin/azure-acr-credential-provider-1.34.13", "/var/lib/kubelet/credential-provider/acr-credential-provider", 205, []string{"--version"}},
	}
	for _, arch := range platform.Arches {
		entries := m.Entries(ubuntu, arch)
		if len(entries) != 18 {
			t.Errorf("%s: %d entries, want 18", arch, len(entries))
		}
		for _, tt := range tests {
			i := slices.IndexFunc(entries, func(e manifest.Entry) bool {
				return e.Tool == tt.tool && e.Version.String() == tt.version
			})
			if i < 0 {
				t.Errorf("%s: no %s %s", arch, tt.tool, tt.version)
				continue
			}
			e := entries[i]
			if e.Package != tt.package_ || e.CacheDir != tt.cache || !slices.Equal(e.BinaryPaths, tt.paths) ||
				e.Versioned != tt.versioned || e.Target != tt.target || e.ExitCode != tt.exit ||
				!slices.Equal(e.VersionArgs, tt.args) || e.K8s != tt.k8s || e.Arch != arch || e.Distro != ubuntu {
				t.Errorf("%s:\n got %+v\nwant %+v", e.ID(), e, tt)
			}
		}
	}
	if got := m.Entries(platform.Distro{ID: "debian", VersionID: "12"}, platform.AMD64); len(got) != 0 {
		t.Errorf("Entries for a distro the manifest does not name: %v", got)
	}
	if got := m.Entries(ubuntu, platform.Any); len(got) != 0 {
		t.Errorf("Entries for arch all: %v", got)
	}
	// A tool with no built-in defaults.
	if got := m.Tool("crictl"); got.Package != "crictl" || got.ExitCode != manifest.DefaultExitCode || got.Target != "/opt/bin/crictl" || !slices.Equal(got.VersionArgs, []string{"--version"}) {
		t.Errorf("Tool(crictl) = %+v", got)
	}
}

func TestEntriesOverridesAndArches(t *testing.T) {
	t.Parallel()
	m, err := manifest.Load("testdata/valid-tools-overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	debian := platform.Distro{ID: "debian", VersionID: "12"}
	amd := m.Entries(debian, platform.AMD64)
	if len(amd) != 3 {
		t.Fatalf("amd64: %d entries", len(amd))
	}
	kubelet := amd[0]
	if kubelet.CacheDir != "/var/cache/kubelet-debs" || !slices.Equal(kubelet.BinaryPaths, []string{"usr/bin/kubelet", "./opt/kubelet/bin/kubelet"}) ||
		kubelet.Target != "/usr/local/bin/kubelet" || kubelet.ExitCode != 121 {
		t.Errorf("kubelet overrides not applied: %+v", kubelet)
	}
	if kubectl := amd[1]; kubectl.ExitCode != 122 || kubectl.Target != "/opt/bin/kubectl" {
		t.Errorf("kubectl defaults lost: %+v", kubectl)
	}
	gcloud := amd[2]
	if gcloud.Version.Epoch != 1 || gcloud.Versioned != "/opt/bin/google-cloud-cli-528.0.0" || gcloud.Target != "/opt/bin/gcloud" || gcloud.ExitCode != 7 || gcloud.Exact() {
		t.Errorf("google-cloud-cli: %+v", gcloud)
	}
	arm := m.Entries(debian, platform.ARM64)
	if len(arm) != 1 || arm[0].Tool != "google-cloud-cli" || arm[0].Index != 2 {
		t.Errorf("arm64 entries: %+v", arm)
	}

	rpm, err := manifest.Load("testdata/valid-rpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mariner := platform.Distro{ID: "mariner", VersionID: "2.0"}
	if got := rpm.Entries(mariner, platform.AMD64); len(got) != 0 {
		t.Errorf("mariner amd64: %v", got)
	}
	if got := rpm.Entries(mariner, platform.ARM64); len(got) != 2 {
		t.Errorf("mariner arm64: %v", got)
	}
	amzn := rpm.Entries(platform.Distro{ID: "amzn", VersionID: "2023"}, platform.AMD64)
	if len(amzn) != 2 || amzn[0].K8s != "1.34.10-rc.1" || amzn[0].Versioned != "/opt/bin/kubelet-1.34.10~rc.1" {
		t.Errorf("amzn: %+v", amzn)
	}
}

func TestServes(t *testing.T) {
	t.Parallel()
	m, err := manifest.Load("testdata/valid-minor-lines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	entries := m.Entries(platform.Distro{ID: "ubuntu", VersionID: "22.04"}, platform.AMD64)
	serving := func(tool, k8s string) []string {
		v := semver.MustParse(k8s)
		var out []string
		for _, e := range entries {
			if e.Tool == tool && e.Serves(v) {
				out = append(out, e.Version.String())
			}
		}
		return out
	}
	tests := []struct {
		tool, k8s string
		want      []string
	}{
		// The loose-match trap: exact versions serve exactly.
		{"kubelet", "1.34.1", []string{"1.34.1-ubuntu22.04u1"}},
		{"kubelet", "1.34.10", []string{"1.34.10-ubuntu22.04u1"}},
		{"kubelet", "1.34.11", []string{"1.34.11-ubuntu22.04u1"}},
		{"kubelet", "1.34.12", nil},
		{"kubelet", "1.34.10-rc.1", nil},
		{"kubelet", "1.34.10+build", []string{"1.34.10-ubuntu22.04u1"}},
		{"kubectl", "1.34.1", []string{"1.34.1-ubuntu22.04u1"}},
		// Minor lines serve every patch of the line, and nothing else.
		{"azure-acr-credential-provider", "1.34.0", []string{"1.34.13-ubuntu22.04u1"}},
		{"azure-acr-credential-provider", "1.34.1", []string{"1.34.13-ubuntu22.04u1"}},
		{"azure-acr-credential-provider", "1.34.99", []string{"1.34.13-ubuntu22.04u1"}},
		{"azure-acr-credential-provider", "1.33.17", []string{"1.33.17-ubuntu22.04u1"}},
		{"azure-acr-credential-provider", "1.3.4", nil},
		{"azure-acr-credential-provider", "1.35.0", nil},
		{"azure-acr-credential-provider", "2.34.0", nil},
	}
	for _, tt := range tests {
		if got := serving(tt.tool, tt.k8s); !slices.Equal(got, tt.want) {
			t.Errorf("%s serving %s: %v, want %v", tt.tool, tt.k8s, got, tt.want)
		}
	}
	for _, e := range entries {
		if exact := e.Tool != "azure-acr-credential-provider"; e.Exact() != exact {
			t.Errorf("%s: Exact() = %v", e.ID(), e.Exact())
		}
	}
}

func TestParseK8sVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"1.34.10": "1.34.10", "v1.34.10": "1.34.10", "1.34.10-rc.1": "1.34.10-rc.1"} {
		v, err := manifest.ParseK8sVersion(in)
		if err != nil || v.String() != want {
			t.Errorf("ParseK8sVersion(%q) = %v, %v; want %s", in, v, err, want)
		}
	}
	for in, frag := range map[string]string{
		"1.34": "is a minor line", "": "not a Kubernetes version", "1.34.x": "not a Kubernetes version",
		"latest": "not a Kubernetes version", "1": "not a Kubernetes version", "01.34.1": "not a Kubernetes version",
		"1.34.10.1": "not a Kubernetes version", " 1.34.10": "not a Kubernetes version",
	} {
		if v, err := manifest.ParseK8sVersion(in); err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseK8sVersion(%q) = %v, %v; want an error saying %q", in, v, err, frag)
		}
	}
}

func TestFileName(t *testing.T) {
	t.Parallel()
	m, err := manifest.Load("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m.File() != "testdata/valid-minimal.yaml" {
		t.Errorf("File() = %q", m.File())
	}
}

// FuzzParse: any input either parses into a manifest whose entries resolve,
// or fails with a *manifest.Error — never a panic, never another error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(manifests.Components)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Parse("fuzz.yaml", data)
		if err != nil {
			var merr *manifest.Error
			if !errors.As(err, &merr) || len(merr.Problems) == 0 {
				t.Fatalf("error %T without problems: %v", err, err)
			}
			_ = err.Error()
			return
		}
		for _, ds := range m.Distros() {
			d, err := platform.ParseDistro(ds)
			if err != nil {
				t.Fatalf("accepted distro %q: %v", ds, err)
			}
			for _, a := range platform.Arches {
				for _, e := range m.Entries(d, a) {
					_ = e.ID()
					if !manifest.NamePattern.MatchString(e.Tool) || !filepath.IsAbs(e.Target) || !filepath.IsAbs(e.CacheDir) {
						t.Fatalf("accepted %+v", e)
					}
					if e.Source != manifest.FromPackage && (len(e.Digest) != len("sha256:")+64 || !strings.HasPrefix(e.Digest, "sha256:") || !filepath.IsLocal(e.Path)) {
						t.Fatalf("accepted an unpinned or escaping artifact %+v", e)
					}
					for _, p := range e.BinaryPaths {
						if !filepath.IsLocal(p) {
							t.Fatalf("accepted binary path %q", p)
						}
					}
				}
			}
		}
	})
}

func TestResolve(t *testing.T) {
	t.Parallel()
	m, err := manifest.Parse("m.yaml", []byte(`components:
  - tool: azure-acr-credential-provider
    distro: ubuntu-24.04
    packageVersion: "1.34.13-ubuntu24.04u1"
    k8sVersion: "1.34"
  - tool: azure-acr-credential-provider
    distro: ubuntu-24.04
    packageVersion: "1.34.14-ubuntu24.04u1"
    k8sVersion: "1.34.1"
  - tool: kubelet
    distro: ubuntu-24.04
    packageVersion: "1.34.1-ubuntu24.04u1"
  - tool: kubectl
    distro: ubuntu-24.04
    packageVersion: "1.34.1-ubuntu24.04u1"
  - tool: kubelet
    distro: ubuntu-24.04
    packageVersion: "1.34.10-ubuntu24.04u1"
  - tool: kubectl
    distro: ubuntu-24.04
    packageVersion: "1.34.10-ubuntu24.04u1"
`))
	if err != nil {
		t.Fatal(err)
	}
	entries := m.Entries(platform.Distro{ID: "ubuntu", VersionID: "24.04"}, platform.ARM64)
	if got := manifest.Tools(entries); !slices.Equal(got, []string{"azure-acr-credential-provider", "kubelet", "kubectl"}) {
		t.Errorf("Tools() = %v", got)
	}
	if got := manifest.Served(entries, "kubelet"); !slices.Equal(got, []string{"1.34.1", "1.34.10"}) {
		t.Errorf("Served(kubelet) = %v", got)
	}
	tests := []struct {
		tool, k8s, want string // want: package version, "" for none
	}{
		{"kubelet", "1.34.1", "1.34.1-ubuntu24.04u1"},
		{"kubelet", "1.34.10", "1.34.10-ubuntu24.04u1"},
		{"kubelet", "1.34.11", ""},
		{"kubelet", "1.34.0", ""},
		{"kubectl", "1.34.10", "1.34.10-ubuntu24.04u1"},
		// An exact entry wins over the minor line, wherever it is.
		{"azure-acr-credential-provider", "1.34.1", "1.34.14-ubuntu24.04u1"},
		{"azure-acr-credential-provider", "1.34.10", "1.34.13-ubuntu24.04u1"},
		{"azure-acr-credential-provider", "1.35.0", ""},
		{"crictl", "1.34.1", ""},
	}
	for _, tt := range tests {
		e, ok := manifest.Resolve(entries, tt.tool, semver.MustParse(tt.k8s))
		if got := e.Version.String(); ok != (tt.want != "") || ok && got != tt.want {
			t.Errorf("Resolve(%s, %s) = %s, %v; want %q", tt.tool, tt.k8s, got, ok, tt.want)
		}
	}
}

// TestLargeValid: a manifest just under MaxSize parses in bounded time.
func TestLargeValid(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("components:\n")
	for i := 0; b.Len() < manifest.MaxSize-200; i++ {
		fmt.Fprintf(&b, "  - tool: crictl\n    distro: azurelinux-3.0\n    packageVersion: \"1.%d.%d-1.azl3\"\n", i/1000, i%1000)
	}
	start := time.Now()
	m, err := manifest.Parse("large.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Parse of %d components took %v", len(m.Components), elapsed)
	}
	if n := len(m.Entries(platform.Distro{ID: "azurelinux", VersionID: "3.0"}, platform.AMD64)); n != len(m.Components) {
		t.Errorf("%d entries for %d components", n, len(m.Components))
	}
}
