// Package cli is reconcile's command line: flags in, exit code out. It wires
// manifest → observe → plan → apply and maps errors to exit codes; nothing
// below it exits.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/nodeimage/reconcile/internal/apply"
	"github.com/nodeimage/reconcile/internal/events"
	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgmgr"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/state"
	"github.com/nodeimage/reconcile/internal/verify"
	"github.com/nodeimage/reconcile/manifests"
)

type options struct {
	mode             string
	dryRun           bool
	root             string
	distro           string
	arch             string
	k8sVersion       string
	enforcePackage   bool
	keepCache        bool
	verifyDigest     bool
	requireDeps      bool
	exec             bool
	output           string
	detailedExitcode bool
	lockTimeout      time.Duration
	parallel         int
	verbose          bool
	version          bool
	manifest         string
	pmArgs           stringList
	eventsDir        string
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// usageError is bad input on the command line or in the environment.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func parse(args []string, getenv func(string) string, stdout io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.mode, "mode", "", "bake, boot or verify")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan, change nothing")
	fs.StringVar(&o.root, "root", "/", "the root every path is under")
	fs.StringVar(&o.distro, "distro", "", "distro as <id>-<version_id>")
	fs.StringVar(&o.arch, "arch", string(platform.Host()), "amd64 or arm64")
	fs.StringVar(&o.k8sVersion, "k8s-version", getenv("KUBERNETES_VERSION"), "cluster version to boot for")
	fs.BoolVar(&o.enforcePackage, "enforce-package-install", getenv("SHOULD_ENFORCE_KUBE_PMC_INSTALL") == "true", "boot from the package, not the versioned binary")
	fs.BoolVar(&o.keepCache, "keep-cache", false, "boot: keep the package cache")
	fs.BoolVar(&o.verifyDigest, "verify-digest", false, "compare full sha256 digests")
	fs.BoolVar(&o.requireDeps, "require-deps", false, "boot: fail when the node lacks a dependency of a package")
	fs.BoolVar(&o.exec, "exec", false, "verify: run each binary's version command")
	fs.StringVar(&o.output, "output", "text", "text or json")
	fs.BoolVar(&o.detailedExitcode, "detailed-exitcode", false, "dry-run: exit 5 when the plan has changes")
	fs.DurationVar(&o.lockTimeout, "lock-timeout", 5*time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&o.parallel, "parallel", runtime.NumCPU(), "concurrent extractions at bake")
	fs.BoolVar(&o.verbose, "verbose", false, "log every action to stderr")
	fs.Var(&o.pmArgs, "pm-arg", "extra argument for apt-get or dnf (repeatable)")
	fs.StringVar(&o.eventsDir, "events-dir", "", "write a provisioning event per action into this directory (under --root)")
	fs.BoolVar(&o.version, "version", false, "print the version")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	// flag stops at the first argument that is not a flag; parsing again
	// after it lets flags follow MANIFEST, as users write them.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, badInput("%v (see reconcile --help)", err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *help {
		io.WriteString(stdout, helpText)
		return nil, nil
	}
	switch len(positional) {
	case 0:
	case 1:
		o.manifest = positional[0]
	default:
		return nil, badInput("at most one MANIFEST argument, got %q", positional)
	}
	if o.mode == "" && o.dryRun {
		o.mode = string(plan.Bake)
	}
	switch plan.Mode(o.mode) {
	case plan.Bake, plan.Boot, plan.Verify:
	case "":
		if !o.version {
			return nil, badInput("--mode is required: bake, boot or verify (or --dry-run alone for the bake plan)")
		}
	default:
		return nil, badInput("--mode %q: expected bake, boot or verify", o.mode)
	}
	if o.output != "text" && o.output != "json" {
		return nil, badInput("--output %q: expected text or json", o.output)
	}
	if o.detailedExitcode && !o.dryRun {
		return nil, badInput("--detailed-exitcode goes with --dry-run")
	}
	if v := getenv("SHOULD_ENFORCE_KUBE_PMC_INSTALL"); v != "" && v != "true" && v != "false" {
		return nil, badInput("SHOULD_ENFORCE_KUBE_PMC_INSTALL=%q: expected true or false", v)
	}
	return o, nil
}

// Run is the whole command; it returns the exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parse(args, getenv, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "reconcile: %v\n", err)
		return ExitBadInput
	}
	if o == nil {
		return ExitOK // --help
	}
	if o.version {
		fmt.Fprintln(stdout, buildVersion())
		return ExitOK
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if o.output == "json" {
		logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	}
	out := &usedWriter{Writer: stdout}
	c := &command{o: o, log: logger, stdout: out, stderr: stderr, getenv: getenv}
	code, err := c.run(ctx)
	if err != nil && ctx.Err() != nil {
		code, err = ExitInterrupted, fmt.Errorf("interrupted (%v): %w", context.Cause(ctx), err)
	}
	if err != nil {
		// --output json prints one document: the plan or results (which
		// carry the error) or, when the run failed before them, this.
		if o.output == "json" && !out.used {
			json.NewEncoder(stdout).Encode(map[string]any{"error": err.Error(), "exit_code": code})
		}
		fmt.Fprintf(stderr, "reconcile: %v\n", err)
	}
	return code
}

// usedWriter remembers whether anything was written through it.
type usedWriter struct {
	io.Writer
	used bool
}

func (u *usedWriter) Write(p []byte) (int, error) {
	u.used = true
	return u.Writer.Write(p)
}

type command struct {
	o      *options
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// manager is the distro's package manager, nil for an unknown distro:
	// the plan names it, apply fetches with it.
	manager pkgmgr.Manager
}

func (c *command) run(ctx context.Context) (int, error) {
	start := time.Now()
	m, err := c.loadManifest()
	if err != nil {
		return ExitBadInput, err
	}
	// Absolute, because the package manager is told host paths under it.
	rootDir, err := filepath.Abs(c.o.root)
	if err != nil {
		return ExitBadInput, badInput("--root %s: %v", c.o.root, err)
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return ExitBadInput, badInput("--root %s: %v", c.o.root, err)
	}
	defer root.Close()
	req, err := c.request(root)
	if err != nil {
		return ExitBadInput, err
	}
	if len(m.Entries(req.Distro, req.Arch)) == 0 && !c.o.dryRun {
		return ExitBadInput, badInput("the manifest %s has no entries for %s %s (it lists %s)",
			m.File(), req.Distro, req.Arch, strings.Join(m.Distros(), ", "))
	}
	if req.Mode == plan.Verify {
		return c.verify(ctx, root, m, req)
	}
	// A boot failure that is no one tool's (a lock it cannot open, a disk
	// it cannot read) exits with the first tool's code: provisioning knows
	// only those.
	runFailure := ExitFailure
	if entries := m.Entries(req.Distro, req.Arch); req.Mode == plan.Boot && len(entries) > 0 {
		runFailure = entries[0].ExitCode
	}
	if !c.o.dryRun {
		unlock, err := state.Lock(ctx, root, c.o.lockTimeout)
		if errors.Is(err, state.ErrLocked) {
			return ExitLocked, err
		}
		if err != nil {
			return runFailure, err
		}
		defer unlock()
	}
	st, err := state.Observe(ctx, root, plan.Query(m, req))
	if err != nil {
		return runFailure, fmt.Errorf("observing %s: %w", c.o.root, err)
	}
	p, err := plan.Compute(m, st, req)
	if err != nil {
		return ExitBadInput, err
	}
	if c.o.dryRun {
		if err := c.printPlan(p, m); err != nil {
			return ExitFailure, err
		}
		// The code the run would exit with: a plan with problems is no
		// plan with changes.
		if err := p.Err(); c.o.detailedExitcode && err != nil {
			return planExit(req.Mode, err, runFailure), nil
		}
		if c.o.detailedExitcode && len(p.Actions) > 0 {
			return ExitChanges, nil
		}
		return ExitOK, nil
	}
	if err := p.Err(); err != nil {
		c.printPlan(p, m)
		return planExit(req.Mode, err, runFailure), c.emit(root, p, nil, start, err)
	}
	results, err := apply.Apply(ctx, p, c.applyOptions(root, req, p))
	if perr := c.printResults(p, results, err); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return planExit(req.Mode, err, runFailure), c.emit(root, p, results, start, err)
	}
	return ExitOK, c.emit(root, p, results, start, nil)
}

// emit writes the provisioning events of a run, when asked for, and returns
// runErr. Events that cannot be written are a warning, not a failure: the
// binaries are in place either way.
func (c *command) emit(root *os.Root, p *plan.Plan, results []plan.Result, start time.Time, runErr error) error {
	if c.o.eventsDir == "" {
		return runErr
	}
	if err := c.writeEvents(root, p, results, start, runErr); err != nil {
		c.log.Warn("writing provisioning events failed", "dir", c.o.eventsDir, "err", err)
	}
	return runErr
}

func (c *command) writeEvents(root *os.Root, p *plan.Plan, results []plan.Result, start time.Time, runErr error) error {
	w := events.Writer{Root: root, Dir: c.o.eventsDir}
	var errs []error
	for _, r := range results {
		msg := r.Action.String()
		if r.Error != "" {
			msg = r.Error
		}
		for _, warn := range r.Warnings {
			msg += "; warning: " + warn
		}
		errs = append(errs, w.Write(events.New(r.Action.Task(p.Mode), r.Start, r.Start.Add(r.Duration), r.Error != "", msg), r.Start))
	}
	msg := fmt.Sprintf("%s %s %s: %s", p.Mode, p.Distro, p.Arch, plan.Summary(p.Actions))
	if len(p.Actions) == 0 {
		msg = fmt.Sprintf("%s %s %s: no changes", p.Mode, p.Distro, p.Arch)
	}
	if runErr != nil {
		msg = runErr.Error()
	}
	for _, warn := range p.Warnings {
		msg += "; warning: " + warn
	}
	errs = append(errs, w.Write(events.New("reconcile."+string(p.Mode), start, time.Now(), runErr != nil, msg), start))
	return errors.Join(errs...)
}

func (c *command) loadManifest() (*manifest.Manifest, error) {
	if c.o.manifest == "" {
		return manifest.Parse(manifests.Name, manifests.Components)
	}
	return manifest.Load(c.o.manifest)
}

func (c *command) request(root *os.Root) (plan.Request, error) {
	req := plan.Request{
		Mode:           plan.Mode(c.o.mode),
		EnforcePackage: c.o.enforcePackage,
		KeepCache:      c.o.keepCache,
		VerifyDigest:   c.o.verifyDigest,
		RequireDeps:    c.o.requireDeps,
	}
	var err error
	if c.o.distro != "" {
		if req.Distro, err = platform.ParseDistro(c.o.distro); err != nil {
			return req, badInput("--distro: %v", err)
		}
	} else if req.Distro, err = state.DetectDistro(root); err != nil {
		return req, badInput("%v", err)
	}
	arch, err := platform.ParseArch(c.o.arch)
	if err != nil || arch == platform.Any {
		return req, badInput("--arch %q: expected amd64 or arm64", c.o.arch)
	}
	req.Arch = arch
	if req.Distro.Known() {
		if m, err := pkgmgr.New(req.Distro.Format(), pkgmgr.Options{Logger: c.log, ExtraArgs: c.o.pmArgs}); err == nil {
			c.manager, req.Manager = m, m.Name()
		}
	}
	// Bake serves every version: a KUBERNETES_VERSION left in an image
	// pipeline's environment is none of its business.
	if c.o.k8sVersion != "" && req.Mode != plan.Bake {
		if req.K8sVersion, err = manifest.ParseK8sVersion(c.o.k8sVersion); err != nil {
			return req, badInput("--k8s-version (or KUBERNETES_VERSION): %v", err)
		}
	} else if req.Mode == plan.Boot {
		return req, badInput("boot needs the cluster version: --k8s-version or KUBERNETES_VERSION")
	}
	return req, nil
}

func (c *command) applyOptions(root *os.Root, req plan.Request, p *plan.Plan) apply.Options {
	o := apply.Options{
		Root: root, Logger: c.log, Parallel: c.o.parallel, Limits: pkgfile.DefaultLimits,
		Format:      req.Distro.Format(),
		AfterAction: crashHook(c.getenv), Manager: c.manager,
	}
	if f, ok := c.stderr.(*os.File); ok && c.o.output == "text" && term.IsTerminal(int(f.Fd())) {
		var done atomic.Int64
		total := len(p.Actions)
		o.Progress = func(a plan.Action, n int64, took time.Duration) {
			fmt.Fprintf(c.stderr, "[%d/%d] %s %s: %.1f MB in %s (%.0f MB/s)\n", done.Add(1), total, a.Tool, a.PackageVersion,
				float64(n)/1e6, took.Round(time.Millisecond), float64(n)/1e6/max(took.Seconds(), 1e-3))
		}
	}
	return o
}

// planExit maps a failure to its exit code: at boot the failing tool's own,
// else runFailure.
func planExit(mode plan.Mode, err error, runFailure int) int {
	if mode != plan.Boot {
		return ExitFailure
	}
	var pe *plan.Error
	if errors.As(err, &pe) {
		return pe.ExitCode()
	}
	var ae *apply.ActionError
	if errors.As(err, &ae) && ae.Action.ExitCode != 0 {
		return ae.Action.ExitCode
	}
	return runFailure
}

func (c *command) printPlan(p *plan.Plan, m *manifest.Manifest) error {
	if c.o.output == "json" {
		return p.WriteJSON(c.stdout)
	}
	return p.WriteText(c.stdout, m.Distros())
}

func (c *command) printResults(p *plan.Plan, results []plan.Result, applyErr error) error {
	if c.o.output == "json" {
		doc := struct {
			Plan    *plan.Plan    `json:"plan"`
			Results []plan.Result `json:"results"`
			Error   string        `json:"error,omitempty"`
		}{p, results, ""}
		if applyErr != nil {
			doc.Error = applyErr.Error()
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	if len(p.Actions) == 0 {
		return p.WriteText(c.stdout, nil)
	}
	var b strings.Builder
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, r := range results {
		fmt.Fprintf(&b, "%s\n", r)
	}
	if applyErr == nil {
		fmt.Fprintf(&b, "%s done: %s.\n", p.Mode, plan.Summary(p.Actions))
	}
	_, err := io.WriteString(c.stdout, b.String())
	return err
}

func (c *command) verify(ctx context.Context, root *os.Root, m *manifest.Manifest, req plan.Request) (int, error) {
	checks, err := verify.Run(ctx, root, m, req.Distro, req.Arch, verify.Options{K8sVersion: req.K8sVersion, Exec: c.o.exec, HostArch: platform.Host()})
	if err != nil {
		return ExitFailure, err
	}
	failed := 0
	for _, ch := range checks {
		if !ch.OK {
			failed++
		}
	}
	if c.o.output == "json" {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"checks": checks, "failed": failed}); err != nil {
			return ExitFailure, err
		}
	} else {
		for _, ch := range checks {
			fmt.Fprintln(c.stdout, ch)
		}
	}
	if failed > 0 {
		return ExitVerify, fmt.Errorf("verify: %d of %d binaries differ from the manifest", failed, len(checks))
	}
	if c.o.output == "text" {
		fmt.Fprintf(c.stdout, "verify: all %d binaries match the manifest.\n", len(checks))
	}
	return ExitOK, nil
}
