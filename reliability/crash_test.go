package reliability_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Three tools, two versions each: the credential provider's boot target is
// outside /opt/bin.
func smallScenario(f platform.Format) scenario {
	if f == platform.RPM {
		return scenario{name: "rpm", format: f, distro: "azurelinux-3.0", comps: []component{
			{tool: "kubelet", pkgVersion: "1.34.10-1.azl3"},
			{tool: "kubectl", pkgVersion: "1.34.10-1.azl3"},
			{tool: "kubelet", pkgVersion: "1.35.7-2.azl3"},
			{tool: "kubectl", pkgVersion: "1.35.7-1.azl3"},
			{tool: "azure-acr-credential-provider", pkgVersion: "1.34.13-1.azl3", k8s: "1.34"},
			{tool: "azure-acr-credential-provider", pkgVersion: "1.35.8-1.azl3", k8s: "1.35"},
		}}
	}
	return scenario{name: "deb", format: f, distro: "ubuntu-24.04", comps: []component{
		{tool: "kubelet", pkgVersion: "1.34.10-ubuntu24.04u1"},
		{tool: "kubectl", pkgVersion: "1.34.10-ubuntu24.04u1"},
		{tool: "kubelet", pkgVersion: "1.35.7-ubuntu24.04u1"},
		{tool: "kubectl", pkgVersion: "1.35.7-ubuntu24.04u1"},
		{tool: "azure-acr-credential-provider", pkgVersion: "1.34.13-ubuntu24.04u1", k8s: "1.34"},
		{tool: "azure-acr-credential-provider", pkgVersion: "1.35.8-ubuntu24.04u1", k8s: "1.35"},
	}}
}

// bigPad makes kubelet big enough that kills land mid-extraction.
const bigPad = 24 << 20

func bigScenario() scenario {
	s := smallScenario(platform.Deb)
	s.name = "deb-big"
	s.comps = slices.Clone(s.comps)
	for i := range s.comps {
		if s.comps[i].tool == "kubelet" {
			s.comps[i].pad = bigPad
		}
	}
	return s
}

// bootK8s is the cluster version the boot cases ask for.
const bootK8s = "1.35.7"

// kills counts what the crash tests killed, for the summary.
var kills struct {
	bake, boot, hook, random, big, recovery atomic.Int64
	// failed counts the trials after which a recurring failure (a finding)
	// was noted: a temp file left, the next run failing.
	failed atomic.Int64
}

func reportKills() {
	total := kills.bake.Load() + kills.boot.Load()
	verdict := "survived"
	if n := kills.failed.Load(); n > 0 {
		verdict = fmt.Sprintf("(%d trials NOT survived: see the failures)", n)
	}
	report("1 crash", "crash: %d kills %s (bake %d, boot %d; %d at the hook after each action, %d after a random delay, %d of the recovery run; %d with a %d MB kubelet)",
		total, verdict, kills.bake.Load(), kills.boot.Load(), kills.hook.Load(), kills.random.Load(), kills.recovery.Load(), kills.big.Load(), bigPad>>20)
}

func countKill(c *crashCase, how string) {
	if c.mode == "bake" {
		kills.bake.Add(1)
	} else {
		kills.boot.Add(1)
	}
	switch how {
	case "hook":
		kills.hook.Add(1)
	case "random":
		kills.random.Add(1)
	case "recovery":
		kills.recovery.Add(1)
	}
	if strings.HasSuffix(c.s.name, "-big") {
		kills.big.Add(1)
	}
	reportKills()
}

// trial runs one crash trial and counts it as failed when it failed t or
// added a finding.
func (c *crashCase) trial(t *testing.T, f func()) {
	n, failed := 0, t.Failed()
	for _, ex := range c.findings {
		n += len(ex)
	}
	defer func() { // also after t.Fatal
		for _, ex := range c.findings {
			n -= len(ex)
		}
		if n != 0 || t.Failed() && !failed {
			kills.failed.Add(1)
			reportKills()
		}
	}()
	f()
}

// crashCase is one run (bake or boot, with flags) to interrupt, from a
// starting root, and the tree it converges to.
type crashCase struct {
	name     string
	s        scenario
	mode     string // bake or boot
	flags    []string
	start    string // the root every trial copies
	manifest string
	final    tree // what an uninterrupted run leaves
	plan     []string
	// findings gathers the failures that recur from trial to trial (temp
	// files left behind), reported once per case with how often they
	// happened, so that the other checks go on.
	findings map[string][]string
}

// finding notes one occurrence of a recurring failure.
func (c *crashCase) finding(what, example string) {
	if c.findings == nil {
		c.findings = map[string][]string{}
	}
	c.findings[what] = append(c.findings[what], example)
}

// reportFindings fails t once per kind of recurring failure.
func (c *crashCase) reportFindings(t *testing.T, trials int) {
	t.Helper()
	keys := make([]string, 0, len(c.findings))
	for k := range c.findings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ex := c.findings[k]
		t.Errorf("%s: %s: in %d of %d trials, e.g. %s", c.name, k, len(ex), trials, ex[0])
	}
}

func (c *crashCase) args(root string) []string {
	a := []string{"--mode=" + c.mode, "--root", root, "--arch", "amd64"}
	if c.mode == "boot" {
		a = append(a, "--k8s-version", bootK8s)
	}
	a = append(a, c.flags...)
	return append(a, c.manifest)
}

func (c *crashCase) dryRun(t testing.TB, root string) []string {
	return planned(t, c.args(root)...)
}

func (c *crashCase) verify(t testing.TB, root string) {
	t.Helper()
	a := []string{"--mode=verify", "--root", root, "--arch", "amd64"}
	if c.mode == "boot" {
		a = append(a, "--k8s-version", bootK8s)
	}
	run(t, nil, append(a, c.manifest)...).must(t, 0)
}

// newCrashCase prepares the starting root (bake mode: the packages only;
// boot mode: a baked image) and the reference result of an uninterrupted run.
func newCrashCase(t *testing.T, s scenario, mode string, flags ...string) *crashCase {
	t.Helper()
	c := &crashCase{name: s.name + " " + mode + strings.Join(append([]string{""}, flags...), " "), s: s, mode: mode, flags: flags}
	c.start, c.manifest = newRoot(t, s)
	if mode == "boot" {
		run(t, nil, "--mode=bake", "--root", c.start, "--arch", "amd64", c.manifest).must(t, 0)
	}
	c.plan = c.dryRun(t, c.start)
	ref := copyRoot(t, c.start)
	run(t, nil, c.args(ref)...).must(t, 0)
	c.final = snapshot(t, ref)
	c.checkFinal(t)
	// The padded binaries still run and say their version.
	a := []string{"--mode=verify", "--exec", "--root", ref, "--arch", "amd64"}
	if c.mode == "boot" {
		a = append(a, "--k8s-version", bootK8s)
	}
	if r := run(t, nil, append(a, c.manifest)...).must(t, 0); !strings.Contains(r.stdout, "reports \"Kubernetes v") {
		t.Fatalf("verify --exec did not run the binaries:\n%s", r.stdout)
	}
	return c
}

// pruneCache makes c a boot of an image whose package caches were deleted
// after bake: boot must not need them. A fetch, if boot ever falls back to
// one, goes to an empty local apt repository, never the host's.
func (c *crashCase) pruneCache(t *testing.T) {
	t.Helper()
	c.name += " (package cache pruned)"
	for _, comp := range c.s.comps {
		if err := os.RemoveAll(filepath.Join(c.start, "opt", comp.tool)); err != nil {
			t.Fatal(err)
		}
	}
	c.flags = append(c.flags, emptyAptRepo(t)...)
	c.plan = c.dryRun(t, c.start)
	ref := copyRoot(t, c.start)
	run(t, nil, c.args(ref)...).must(t, 0)
	c.final = snapshot(t, ref)
	c.checkFinal(t)
}

// emptyAptRepo is --pm-arg flags that point apt-get at an empty local
// repository and nothing else.
func emptyAptRepo(t testing.TB) []string {
	t.Helper()
	opts, err := pkgbuild.AptRepo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, o := range opts {
		flags = append(flags, "--pm-arg="+o)
	}
	return flags
}

// checkFinal holds the reference result to the fixtures' digests, so that
// "the complete new file" means the package's binary, not whatever the
// reference run wrote.
func (c *crashCase) checkFinal(t *testing.T) {
	t.Helper()
	want := map[string]string{}
	if c.mode == "bake" {
		for _, comp := range c.s.comps {
			want[rel(comp.versioned())] = pkg(t, c.s.format, comp).sha256
		}
	} else {
		for _, comp := range c.s.comps {
			if comp.k8s == "" && comp.upstream() == bootK8s || comp.k8s != "" && strings.HasPrefix(bootK8s, comp.k8s+".") {
				want[rel(target(comp.tool))] = pkg(t, c.s.format, comp).sha256
			}
		}
	}
	for p := range c.final {
		if strings.HasPrefix(p, "opt/bin/") || strings.HasPrefix(p, "var/lib/kubelet/") {
			if _, ok := want[p]; !ok {
				t.Errorf("%s: an uninterrupted run left %s", c.name, p)
			}
		}
		if strings.HasPrefix(pathBase(p), tempPrefix) {
			t.Errorf("%s: an uninterrupted run left the temp file %s", c.name, p)
		}
	}
	for p, sum := range want {
		f, ok := c.final[p]
		switch {
		case !ok:
			t.Errorf("%s: an uninterrupted run did not write %s", c.name, p)
		case f.sha256 != sum:
			t.Errorf("%s: %s has sha256 %s, the package's binary %s", c.name, p, f.sha256, sum)
		case f.mode.Perm() != 0o755:
			t.Errorf("%s: %s has mode %s", c.name, p, f.mode)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func rel(abs string) string { return strings.TrimPrefix(abs, "/") }

// checkAfterKill is the crash-safety invariant: every path holds its
// previous content, the complete new content, or (only where the run
// removes it) nothing; the state record is a whole document that claims
// only contents the paths really have in one of those states; anything else
// is a temp file.
func (c *crashCase) checkAfterKill(t *testing.T, label, root string, before, now tree) {
	t.Helper()
	var bad []string
	for p, f := range now {
		switch {
		case p == lockPath || strings.HasPrefix(pathBase(p), tempPrefix):
		case p == recordPath:
		case same(f, before[p]) || same(f, c.final[p]):
		default:
			bad = append(bad, fmt.Sprintf("%s holds neither its previous content nor the complete new file (%d bytes, sha256 %.12s, mode %s)", p, f.size, f.sha256, f.mode))
		}
	}
	for p := range before {
		if _, ok := now[p]; !ok && p != lockPath && !strings.HasPrefix(pathBase(p), tempPrefix) {
			if _, kept := c.final[p]; kept {
				bad = append(bad, p+" vanished, though the run keeps it")
			}
		}
	}
	if _, ok := now[recordPath]; ok {
		rec, _, err := readRecord(root)
		if err != nil {
			bad = append(bad, err.Error())
		}
		for p, b := range rec.Files {
			r := rel(p)
			if !(before[r].sha256 == b.SHA256 && before[r].size == b.Size) && !(c.final[r].sha256 == b.SHA256 && c.final[r].size == b.Size) {
				bad = append(bad, fmt.Sprintf("the state record claims %s has sha256 %.12s, which it has neither before nor after the run", p, b.SHA256))
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: %s:\n  %s", c.name, label, strings.Join(bad, "\n  "))
	}
}

// same reports whether a is b's content and mode.
func same(a, b file) bool {
	return b.sha256 != "" && a.sha256 == b.sha256 && a.size == b.size && a.mode == b.mode
}

// converge is what must follow any kill: the next run exits 0 and leaves
// exactly the reference tree, with no temp file; a dry-run then plans
// nothing and verify passes.
func (c *crashCase) converge(t *testing.T, label, root string) {
	t.Helper()
	if r := run(t, nil, c.args(root)...); r.killed || r.code != 0 {
		c.finding(fmt.Sprintf("the next run failed with exit %d", r.code), label+": "+r.String())
		return
	}
	now := snapshot(t, root)
	temps := now.temps()
	for _, tmp := range temps {
		c.finding("the run after the kill left a temp file in /"+path.Dir(tmp), label+": /"+tmp)
	}
	if d := diff(c.final, now, false, append(temps, lockPath, recordPath)...); len(d) > 0 {
		t.Fatalf("%s: %s: the run after the kill left another tree than an uninterrupted run:\n  %s", c.name, label, strings.Join(d, "\n  "))
	}
	if ops := c.dryRun(t, root); len(ops) > 0 {
		t.Fatalf("%s: %s: converged, but a dry-run still plans %q", c.name, label, ops)
	}
	c.verify(t, root)
}

// checkTempsPlanned: every temp file a kill left must be in the next plan
// (as "remove <temp>"), so that the next run cleans it.
func (c *crashCase) checkTempsPlanned(t *testing.T, label, root string, now tree) []string {
	t.Helper()
	ops := c.dryRun(t, root)
	for _, tmp := range now.temps() {
		if !slices.Contains(ops, "remove /"+tmp) {
			c.finding("the next plan does not remove a temp file in /"+path.Dir(tmp), fmt.Sprintf("%s: /%s (plan: %q)", label, tmp, ops))
		}
	}
	return ops
}

// hookTrial kills the run right after its n-th action (the binary's own
// hook), checks, then kills the recovery run after its first action,
// checks, and converges.
func (c *crashCase) hookTrial(t *testing.T, n int) {
	t.Helper()
	label := fmt.Sprintf("killed after action %d of %d", n, len(c.plan))
	root := copyRoot(t, c.start)
	before := snapshot(t, root)
	r := run(t, []string{"RECONCILE_TEST_KILL_AFTER=" + strconv.Itoa(n)}, c.args(root)...)
	if !r.killed {
		t.Fatalf("%s: %s: the hook did not kill the run: %s", c.name, label, r)
	}
	countKill(c, "hook")
	now := snapshot(t, root)
	c.checkAfterKill(t, label, root, before, now)
	ops := c.checkTempsPlanned(t, label, root, now)
	if len(ops) > 0 {
		label += ", then the recovery run after its first action"
		r := run(t, []string{"RECONCILE_TEST_KILL_AFTER=1"}, c.args(root)...)
		if !r.killed {
			t.Fatalf("%s: %s: the hook did not kill the recovery run: %s", c.name, label, r)
		}
		countKill(c, "recovery")
		after := snapshot(t, root)
		c.checkAfterKill(t, label, root, now, after)
		c.checkTempsPlanned(t, label, root, after)
	}
	c.converge(t, label, root)
}

// randomTrial sends SIGKILL after delay; it reports whether the kill landed
// before the run ended.
func (c *crashCase) randomTrial(t *testing.T, delay time.Duration) bool {
	t.Helper()
	label := fmt.Sprintf("SIGKILL after %s", delay)
	root := copyRoot(t, c.start)
	before := snapshot(t, root)
	cmd, wait := start(t, nil, c.args(root)...)
	time.Sleep(delay)
	cmd.Process.Signal(syscall.SIGKILL)
	r := wait()
	if !r.killed {
		if r.code != 0 {
			t.Fatalf("%s: %s: run failed before the kill: %s", c.name, label, r)
		}
		return false
	}
	countKill(c, "random")
	now := snapshot(t, root)
	c.checkAfterKill(t, label, root, before, now)
	c.checkTempsPlanned(t, label, root, now)
	c.converge(t, label, root)
	return true
}

// duration is how long an uninterrupted run of c takes (the median of 3).
func (c *crashCase) duration(t *testing.T) time.Duration {
	var ds []time.Duration
	for range 3 {
		root := copyRoot(t, c.start)
		ds = append(ds, run(t, nil, c.args(root)...).must(t, 0).dur)
	}
	slices.Sort(ds)
	return ds[1]
}

// TestCrashAtEveryAction kills bake and boot right after each action of
// their plan (deb and rpm; boot from the baked binaries and from the
// packages), and kills the recovery run too.
func TestCrashAtEveryAction(t *testing.T) {
	t.Parallel()
	for _, f := range []platform.Format{platform.Deb, platform.RPM} {
		s := smallScenario(f)
		for _, mc := range []struct {
			mode  string
			flags []string
		}{
			{"bake", nil},
			{"bake", []string{"--parallel=1"}},
			{"boot", nil},
			{"boot", []string{"--enforce-package-install"}},
		} {
			t.Run(s.name+"-"+mc.mode+strings.Join(mc.flags, ""), func(t *testing.T) {
				c := newCrashCase(t, s, mc.mode, mc.flags...)
				for n := 1; n <= len(c.plan); n++ {
					c.trial(t, func() { c.hookTrial(t, n) })
				}
				c.reportFindings(t, len(c.plan))
				t.Logf("%s: killed after each of the %d actions %q", c.name, len(c.plan), c.plan)
			})
		}
	}
}

// TestCrashAtRandomMoments kills bake and boot after seeded random delays
// within an uninterrupted run's duration, with a big kubelet so that most
// kills land mid-extraction.
func TestCrashAtRandomMoments(t *testing.T) {
	t.Parallel()
	r := rng(t)
	t.Logf("seed %d (RELIABILITY_SEED replays it)", seed)
	for _, tc := range []struct {
		s      scenario
		mode   string
		flags  []string
		trials int
		prune  bool
	}{
		{bigScenario(), "bake", nil, 16, false},
		{bigScenario(), "boot", []string{"--enforce-package-install"}, 12, false},
		{bigScenario(), "boot", nil, 8, false},
		{smallScenario(platform.Deb), "bake", nil, 30, false},
		{smallScenario(platform.Deb), "boot", nil, 25, false},
		{smallScenario(platform.Deb), "boot", nil, 25, true},
		{smallScenario(platform.RPM), "bake", nil, 20, false},
		{smallScenario(platform.RPM), "boot", []string{"--enforce-package-install"}, 20, false},
	} {
		name := tc.s.name + "-" + tc.mode + strings.Join(tc.flags, "")
		if tc.prune {
			name += "-pruned-cache"
		}
		t.Run(name, func(t *testing.T) {
			c := newCrashCase(t, tc.s, tc.mode, tc.flags...)
			if tc.prune {
				c.pruneCache(t)
			}
			d := c.duration(t)
			killed := 0
			for range tc.trials {
				c.trial(t, func() {
					if c.randomTrial(t, time.Duration(r.Int64N(int64(d)))) {
						killed++
					}
				})
			}
			t.Logf("%s: an uninterrupted run takes %s; %d of %d random kills landed before it ended", c.name, d.Round(time.Millisecond), killed, tc.trials)
			c.reportFindings(t, killed)
		})
	}
}
