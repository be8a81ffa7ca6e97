package reliability_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/testreport"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"

	// The binary under test is built from cmd/reconcile in TestMain, which
	// go test's result cache does not see: importing what it is made of
	// makes a change anywhere in it rerun this suite instead of replaying
	// a cached "ok" (main.go itself is tracked by track).
	_ "github.com/nodeimage/reconcile/internal/cli"
)

// minKills is the least number of SIGKILLs a full run must land.
const minKills = 200

// bin is the reconcile binary under test, built once by TestMain.
var bin string

// seed drives every random choice of the suite (RELIABILITY_SEED overrides
// it); it is printed so that a failure can be replayed.
var seed uint64 = 20260101

// summary collects the lines TestMain prints after the run, for CI logs and
// the README.
var summary struct {
	sync.Mutex
	lines map[string]string
}

// report sets the summary line for key (printed in key order).
func report(key, format string, args ...any) {
	summary.Lock()
	defer summary.Unlock()
	if summary.lines == nil {
		summary.lines = map[string]string{}
	}
	summary.lines[key] = fmt.Sprintf(format, args...)
}

func TestMain(m *testing.M) {
	if s := os.Getenv("RELIABILITY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "RELIABILITY_SEED=%q: %v\n", s, err)
			os.Exit(2)
		}
		seed = v
	}
	tmp, err := os.MkdirTemp("", "reconcile-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtures.dir = filepath.Join(tmp, "pkgs")
	bin = filepath.Join(tmp, "tmp", "reconcile")
	// The tag compiles in RECONCILE_TEST_KILL_AFTER, the kill hook.
	build := exec.Command("go", "build", "-tags", "reconcile_testhooks", "-o", bin, "./cmd/reconcile")
	build.Dir = ".." // the module root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building reconcile: %v\n%s", err, out)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	// The whole suite must kill at least minKills times: fewer means kills
	// stopped landing (runs got too fast for the delays, or a case was
	// dropped) and the crash figures no longer mean what they say.
	if total := kills.bake.Load() + kills.boot.Load(); code == 0 && flag.Lookup("test.run").Value.String() == "" && total < minKills {
		fmt.Fprintf(os.Stderr, "crash: only %d kills landed, want at least %d\n", total, minKills)
		code = 1
	}
	printSummary()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// printSummary prints the counts on stdout, and writes them to the file
// testreport, for CI: "go test ./..." shows a passing
// package's output only with -v, so CI can cat that file instead.
func printSummary() {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.lines) == 0 {
		return
	}
	keys := make([]string, 0, len(summary.lines))
	for k := range summary.lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "reliability summary (seed %d):\n", seed)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s\n", summary.lines[k])
	}
	fmt.Print(b.String())
	if err := testreport.Write("reliability", b.String()); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", testreport.Env, err)
	}
}

var trackOnce sync.Once

// track tells go test's result cache what a run depends on beyond the test
// binary: the main package the binary under test is built from, and the
// seed (TestMain's own reads are not recorded).
func track() {
	trackOnce.Do(func() {
		os.Stat("../cmd/reconcile/main.go")
		os.Getenv("RELIABILITY_SEED")
	})
}

// rng is a deterministic source for one test: the suite seed mixed with the
// test's name, so that tests do not depend on each other's order.
func rng(t testing.TB) *rand.Rand {
	h := sha256.Sum256([]byte(t.Name()))
	return rand.New(rand.NewPCG(seed, binary.LittleEndian.Uint64(h[:8])))
}

// ---- running the binary ----

type result struct {
	code           int // -1 when killed
	stdout, stderr string
	killed         bool // ended by SIGKILL (the hook's or ours)
	dur            time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (killed %v) after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.killed, r.dur.Round(time.Millisecond), r.stdout, r.stderr)
}

// command is the binary with args in a clean environment plus env.
func command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "LANG=C"}, env...)
	return cmd
}

// start runs the binary and returns a func that waits for it.
func start(t testing.TB, env []string, args ...string) (*exec.Cmd, func() result) {
	t.Helper()
	track()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, func() result {
		err := cmd.Wait()
		r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String(), dur: time.Since(begin)}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("waiting for reconcile: %v", err)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
		return r
	}
}

func run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	_, wait := start(t, env, args...)
	return wait()
}

func (r result) must(t testing.TB, code int) result {
	t.Helper()
	if r.killed || r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
	return r
}

// planned runs a JSON dry-run with args and returns "op path" per action.
func planned(t testing.TB, args ...string) []string {
	t.Helper()
	r := run(t, nil, append([]string{"--dry-run", "--output", "json"}, args...)...).must(t, 0)
	var p struct {
		Actions []struct{ Op, Path string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.stdout)
	}
	ops := []string{}
	for _, a := range p.Actions {
		ops = append(ops, a.Op+" "+a.Path)
	}
	return ops
}

// ---- fixtures: real packages holding real binaries ----

// component is one manifest entry.
type component struct {
	tool, pkgVersion, k8s string
	pad                   int // bytes of seeded random data appended to the ELF
}

// upstream is the version in the versioned binary's name: "1.35.7-2.azl3" → "1.35.7".
func (c component) upstream() string {
	v := c.pkgVersion[strings.IndexByte(c.pkgVersion, ':')+1:]
	return v[:strings.LastIndexByte(v, '-')]
}

func (c component) versioned() string { return "/opt/bin/" + c.tool + "-" + c.upstream() }

func target(tool string) string {
	if tool == "azure-acr-credential-provider" {
		return "/var/lib/kubelet/credential-provider/acr-credential-provider"
	}
	return "/opt/bin/" + tool
}

// scenario is a manifest for one distro and its packages.
type scenario struct {
	name   string
	format platform.Format
	distro string
	comps  []component
}

func (s scenario) manifest() string {
	var b strings.Builder
	b.WriteString("components:\n")
	for _, c := range s.comps {
		fmt.Fprintf(&b, "  - tool: %s\n    distro: %s\n    packageVersion: %q\n", c.tool, s.distro, c.pkgVersion)
		if c.k8s != "" {
			fmt.Fprintf(&b, "    k8sVersion: %q\n", c.k8s)
		}
	}
	return b.String()
}

// built is a package file and the binary it carries.
type built struct {
	path   string
	sha256 string
	size   int64
}

var fixtures struct {
	sync.Mutex
	dir  string
	pkgs map[string]built
}

// pkg builds (once per run) the package of c in format f.
func pkg(t testing.TB, f platform.Format, c component) built {
	t.Helper()
	pkgbuild.RequireFormat(t, f)
	fixtures.Lock()
	defer fixtures.Unlock()
	key := fmt.Sprintf("%s %s %s %d", f, c.tool, c.pkgVersion, c.pad)
	if b, ok := fixtures.pkgs[key]; ok {
		return b
	}
	if fixtures.pkgs == nil {
		fixtures.pkgs = map[string]built{}
	}
	elf, err := pkgbuild.Binary(platform.AMD64, c.upstream())
	if err != nil {
		t.Fatal(err)
	}
	content := padded(elf, c.pad, key)
	dir := filepath.Join(fixtures.dir, strconv.Itoa(len(fixtures.pkgs)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := pkgbuild.Spec{Name: c.tool, Version: c.pkgVersion, Arch: platform.AMD64,
		Files: map[string][]byte{"usr/bin/" + c.tool: content}}
	if c.pad > 0 && f == platform.Deb {
		spec.Compression = "none" // random bytes do not compress; gzip would only cost time
	}
	p, err := pkgbuild.Build(f, dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	b := built{path: p, sha256: hex.EncodeToString(sum[:]), size: int64(len(content))}
	fixtures.pkgs[key] = b
	return b
}

// padded is elf followed by n seeded random bytes: the kernel loads an ELF
// by its program headers, so trailing data changes nothing but its size.
func padded(elf []byte, n int, key string) []byte {
	if n == 0 {
		return elf
	}
	h := sha256.Sum256([]byte(key))
	var s [32]byte
	copy(s[:], h[:])
	out := make([]byte, len(elf), len(elf)+n)
	copy(out, elf)
	pad := make([]byte, n)
	rand.NewChaCha8(s).Read(pad)
	return append(out, pad...)
}

// newRoot is a fresh root with the scenario's os-release and every package
// in its cache dir, and the manifest file.
func newRoot(t testing.TB, s scenario) (root, manifest string) {
	t.Helper()
	root = t.TempDir()
	id, ver, _ := strings.Cut(s.distro, "-")
	writeFile(t, filepath.Join(root, "etc/os-release"), []byte(fmt.Sprintf("ID=%s\nVERSION_ID=\"%s\"\n", id, ver)), 0o644)
	for _, c := range s.comps {
		b := pkg(t, s.format, c)
		dst := filepath.Join(root, "opt", c.tool, "downloads", filepath.Base(b.path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		// Packages are only ever read: a hard link spares copying 25 MB.
		if err := os.Link(b.path, dst); err != nil {
			t.Fatal(err)
		}
	}
	manifest = filepath.Join(t.TempDir(), "components.yaml")
	writeFile(t, manifest, []byte(s.manifest()), 0o644)
	return root, manifest
}

func writeFile(t testing.TB, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

// copyRoot copies the tree src to a new temp dir, keeping modes and mtimes
// (the state record identifies a binary by size and mtime). Regular files
// are hard links, except the state record: reconcile never writes a file in
// place (it writes a temp file and renames it), so a shared inode is never
// changed, and if it ever were the digest checks would say so. The lock file
// is left out so that trials never lock each other.
func copyRoot(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case rel == filepath.FromSlash(lockPath):
			return nil
		case rel == filepath.FromSlash(recordPath):
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(to, info.ModTime(), info.ModTime())
		case info.Mode().IsRegular():
			return os.Link(p, to)
		}
		return fmt.Errorf("%s: unexpected file type %s", p, info.Mode().Type())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

const (
	recordPath = "var/lib/reconcile/state.json"
	lockPath   = "var/lib/reconcile/lock"
	tempPrefix = ".reconcile-tmp-"
)

// ---- the disk as data ----

// file is what a snapshot knows of one path.
type file struct {
	mode   fs.FileMode
	size   int64
	mtime  time.Time
	sha256 string
}

// tree is every non-directory under a root, by slash path relative to it.
type tree map[string]file

func snapshot(t testing.TB, root string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		f := file{mode: info.Mode(), size: info.Size(), mtime: info.ModTime()}
		if info.Mode().IsRegular() {
			if f.sha256, err = digest(p, info); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// temps lists the temp files in tr.
func (tr tree) temps() []string {
	var out []string
	for p := range tr {
		if strings.HasPrefix(pathBase(p), tempPrefix) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func pathBase(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// diff lists the differences between two trees in content and mode (and
// mtime when withTime), skipping the paths in skip.
func diff(a, b tree, withTime bool, skip ...string) []string {
	var out []string
	for p, fa := range a {
		if slices.Contains(skip, p) {
			continue
		}
		fb, ok := b[p]
		switch {
		case !ok:
			out = append(out, "gone: "+p)
		case fa.sha256 != fb.sha256 || fa.size != fb.size:
			out = append(out, "content changed: "+p)
		case fa.mode != fb.mode:
			out = append(out, fmt.Sprintf("mode %s → %s: %s", fa.mode, fb.mode, p))
		case withTime && !fa.mtime.Equal(fb.mtime):
			out = append(out, "mtime changed: "+p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok && !slices.Contains(skip, p) {
			out = append(out, "new: "+p)
		}
	}
	slices.Sort(out)
	return out
}

// record is the part of the state record the suite reads.
type record struct {
	Format int `json:"format"`
	Files  map[string]struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

func readRecord(root string) (record, []byte, error) {
	var rec record
	data, err := os.ReadFile(filepath.Join(root, recordPath))
	if err != nil {
		return rec, nil, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, data, fmt.Errorf("state record is not one complete JSON document: %v", err)
	}
	return rec, data, nil
}

// digests caches file digests by inode, size and mtime: hard-linked packages
// and binaries are hashed once, not once per snapshot. (Not ctime: linking
// changes it.)
var digests sync.Map // inodeKey → string

type inodeKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func digest(p string, info fs.FileInfo) (string, error) {
	st, ok := info.Sys().(*syscall.Stat_t)
	var key inodeKey
	if ok {
		key = inodeKey{uint64(st.Dev), st.Ino, st.Size, st.Mtim.Nano()}
		if d, ok := digests.Load(key); ok {
			return d.(string), nil
		}
	}
	r, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	d := hex.EncodeToString(h.Sum(nil))
	// A file changed within the same clock tick keeps its times: only cache
	// what is older than that.
	if ok && time.Since(info.ModTime()) > time.Second {
		digests.Store(key, d)
	}
	return d, nil
}
