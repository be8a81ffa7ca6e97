// Package cli is reconcile's command line: flags in, exit code out. It wires
// manifest → observe → plan → apply and maps errors to exit codes; nothing
// below it exits.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/nodeimage/reconcile/internal/apply"
	"github.com/nodeimage/reconcile/internal/events"
	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/observe"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/pkgmgr"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/source"
	"github.com/nodeimage/reconcile/internal/verify"
	"github.com/nodeimage/reconcile/internal/view"
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
	offline          bool
	requireVersion   bool // --require-manifest-version
	exec             bool
	targets          bool // verify: the boot targets, not the versioned binaries
	k8sVersionFlag   bool // --k8s-version was given (not only KUBERNETES_VERSION)
	output           string
	detailedExitcode bool
	lockTimeout      time.Duration
	parallel         int
	verbose          bool
	version          bool
	manifest         string
	pmArgs           stringList
	eventsDir        string
	caFile           string
	download         source.Options // the download knobs of the flags
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
	fs.BoolVar(&o.offline, "offline", false, "bake, boot: fetch and download nothing; a package or artifact not in its cache is an error")
	fs.BoolVar(&o.requireVersion, "require-manifest-version", false, "boot: refuse a cluster version no entry serves")
	fs.BoolVar(&o.exec, "exec", false, "verify: run each binary's version command")
	fs.BoolVar(&o.targets, "targets", false, "verify: check the boot targets for --k8s-version, not the versioned binaries")
	fs.StringVar(&o.output, "output", "text", "text or json")
	fs.BoolVar(&o.detailedExitcode, "detailed-exitcode", false, "dry-run: exit 5 when the plan has changes")
	fs.DurationVar(&o.lockTimeout, "lock-timeout", 5*time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&o.parallel, "parallel", runtime.NumCPU(), "concurrent extractions at bake")
	fs.BoolVar(&o.verbose, "verbose", false, "log every action to stderr")
	fs.Var(&o.pmArgs, "pm-arg", "extra argument for apt-get or dnf (repeatable)")
	fs.StringVar(&o.eventsDir, "events-dir", "", "write a provisioning event per action into this directory (under --root)")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM certificates trusted for downloads besides the system's")
	fs.DurationVar(&o.download.Timeout, "download-timeout", 30*time.Minute, "bound on each download, retries included")
	fs.DurationVar(&o.download.IdleTimeout, "download-stall-timeout", 30*time.Second, "fail a download request when no byte arrives for this long")
	fs.IntVar(&o.download.Attempts, "download-attempts", 4, "tries of each download request")
	fs.BoolVar(&o.version, "version", false, "print the version")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	// flag stops at the first argument that is not a flag; parsing again
	// after it lets flags follow MANIFEST, as users write them.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(fs, err)
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
	fs.Visit(func(f *flag.Flag) { o.k8sVersionFlag = o.k8sVersionFlag || f.Name == "k8s-version" })
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
	if o.download.Timeout <= 0 || o.download.IdleTimeout <= 0 || o.download.Attempts < 1 {
		return nil, badInput("--download-timeout and --download-stall-timeout must be positive, --download-attempts at least 1")
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
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
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
	c := &command{o: o, log: logger, stdin: stdin, stdout: out, stderr: stderr, getenv: getenv}
	code, err := c.run(ctx)
	if err != nil && ctx.Err() != nil {
		code, err = ExitInterrupted, fmt.Errorf("interrupted (%v): %w", context.Cause(ctx), err)
	}
	if err != nil {
		// --output json prints one document: the plan or results (which
		// carry the error) or, when the run failed before them, this.
		if o.output == "json" && !out.used {
			view.ErrorJSON(stdout, err, code)
		}
		fmt.Fprintf(stderr, "reconcile: %s\n", view.Message(err))
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
	stdin  io.Reader // MANIFEST "-"
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
	req, err := c.request(root, m)
	if err != nil {
		return ExitBadInput, err
	}
	if !m.HasEntries(req.Distro, req.Arch) && !c.o.dryRun {
		return ExitBadInput, badInput("the manifest %s has no entries for %s %s (it lists %s)",
			m.File(), req.Distro, req.Arch, strings.Join(m.Distros(), ", "))
	}
	if req.Mode == plan.Verify {
		return c.verify(ctx, root, m, req)
	}
	if c.o.k8sVersion == allServed {
		return c.planServed(ctx, root, m, req)
	}
	// A boot failure that is no one tool's (a lock it cannot open, a disk
	// it cannot read) exits with the first tool's code: provisioning knows
	// only those.
	runFailure := ExitFailure
	if req.Mode == plan.Boot {
		for e := range m.AllEntries(req.Distro, req.Arch) {
			runFailure = e.ExitCode
			break
		}
	}
	if !c.o.dryRun {
		unlock, err := observe.Lock(ctx, root, c.o.lockTimeout)
		if errors.Is(err, observe.ErrLocked) {
			return ExitLocked, err
		}
		if err != nil {
			return runFailure, err
		}
		defer unlock()
	}
	p, err := c.plan(ctx, root, m, req)
	if err != nil {
		var bad *usageError
		if errors.As(err, &bad) {
			return ExitBadInput, err
		}
		return runFailure, fmt.Errorf("observing %s: %w", c.o.root, err)
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
		code := planExit(req.Mode, err, runFailure)
		c.printPlan(p, m)
		return code, c.emit(root, p, nil, start, err)
	}
	ao, err := c.applyOptions(root, p)
	if err != nil {
		var bad *usageError
		if errors.As(err, &bad) {
			return ExitBadInput, err
		}
		return runFailure, err
	}
	results, err := apply.Apply(ctx, p, ao)
	code := ExitOK
	if err != nil {
		code = planExit(req.Mode, err, runFailure)
	}
	if perr := c.printResults(p, results, err, code); perr != nil && err == nil {
		err, code = perr, ExitFailure
	}
	return code, c.emit(root, p, results, start, err)
}

// plan observes what the manifest's entries need and plans; when the plan
// needs packages, it opens those caches (only those) and plans again, so a
// boot from intact versioned binaries opens no package.
func (c *command) plan(ctx context.Context, root *os.Root, m *manifest.Manifest, req plan.Request) (*plan.Plan, error) {
	q := plan.Query(m, req)
	st, err := observe.Observe(ctx, root, q)
	if err != nil {
		return nil, err
	}
	p, err := plan.Compute(m, st, req)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	need := p.PackagesNeeded(st)
	if len(need) == 0 {
		return p, nil
	}
	if err := observe.OpenPackages(ctx, root, st, need, q.DepsOf); err != nil {
		return nil, err
	}
	if p, err = plan.Compute(m, st, req); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return p, nil
}

// emit writes the provisioning events of a run, when asked for, and returns
// runErr. Events that cannot be written are a warning, not a failure: the
// binaries are in place either way.
func (c *command) emit(root *os.Root, p *plan.Plan, results []plan.Result, start time.Time, runErr error) error {
	if c.o.eventsDir == "" {
		return runErr
	}
	w := events.Writer{Root: root, Dir: c.o.eventsDir}
	var errs []error
	for _, e := range view.Events(p, results, start, time.Now(), runErr) {
		errs = append(errs, w.Write(e.Event, e.Start))
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Warn("writing provisioning events failed", "dir", c.o.eventsDir, "err", err)
	}
	return runErr
}

func (c *command) loadManifest() (*manifest.Manifest, error) {
	switch c.o.manifest {
	case "":
		return manifest.Parse(manifests.Name, manifests.Components)
	case "-":
		return manifest.Read("(standard input)", c.stdin)
	}
	return manifest.Load(c.o.manifest)
}

func (c *command) request(root *os.Root, m *manifest.Manifest) (plan.Request, error) {
	req := plan.Request{
		Mode:           plan.Mode(c.o.mode),
		EnforcePackage: c.o.enforcePackage,
		KeepCache:      c.o.keepCache,
		VerifyDigest:   c.o.verifyDigest,
		RequireDeps:    c.o.requireDeps,
		Offline:        c.o.offline,
		// Either one makes boot strict: the manifest's setting is the
		// image's policy, the flag a run's.
		RequireManifestVersion: c.o.requireVersion || m.RequiresManifestVersion(),
	}
	var err error
	if c.o.distro != "" {
		if req.Distro, err = platform.ParseDistro(c.o.distro); err != nil {
			return req, badInput("--distro: %v", err)
		}
	} else if req.Distro, err = observe.DetectDistro(root); err != nil {
		return req, badInput("%v", err)
	}
	arch, err := platform.ParseArch(c.o.arch)
	if err != nil || arch == platform.Any {
		return req, badInput("--arch %q: expected amd64 or arm64", c.o.arch)
	}
	req.Arch = arch
	if req.Distro.Known() {
		fc := m.Fetch(req.Distro)
		m, err := pkgmgr.New(req.Distro.Format(), pkgmgr.Options{
			Root: root.Name(), Logger: c.log, ExtraArgs: c.o.pmArgs,
			Sources: fc.AptSources, TestingSources: fc.AptTestingSources, Repos: fc.DnfRepos,
		})
		if err != nil {
			// Only a plan that needs a fetch fails for it, saying why.
			req.NoManager = err.Error()
		} else {
			c.manager, req.Manager = m, m.Name()
		}
	}
	// Bake serves every version, and verify checks the versioned binaries
	// unless told to check the targets (--targets, or --k8s-version given
	// on the command line): a KUBERNETES_VERSION left in an image
	// pipeline's environment is none of their business.
	if req.Mode == plan.Verify && c.o.k8sVersionFlag {
		c.o.targets = true
	}
	if req.Mode == plan.Verify && c.o.targets && c.o.k8sVersion == "" {
		return req, badInput("verify --targets needs the cluster version: --k8s-version or KUBERNETES_VERSION")
	}
	if c.o.k8sVersion == allServed {
		if !c.o.dryRun || req.Mode != plan.Boot {
			return req, badInput("--k8s-version %s plans every served version: it goes with --dry-run --mode=boot", allServed)
		}
		return req, nil
	}
	if c.o.k8sVersion != "" && (req.Mode == plan.Boot || req.Mode == plan.Verify && c.o.targets) {
		if req.K8sVersion, err = manifest.ParseK8sVersion(c.o.k8sVersion); err != nil {
			return req, badInput("--k8s-version (or KUBERNETES_VERSION): %v", err)
		}
	} else if req.Mode == plan.Boot {
		return req, badInput("boot needs the cluster version: --k8s-version or KUBERNETES_VERSION")
	}
	return req, nil
}

func (c *command) applyOptions(root *os.Root, p *plan.Plan) (apply.Options, error) {
	o := apply.Options{
		Root: root, Logger: c.log, Parallel: c.o.parallel, Limits: extractLimits(),
		AfterAction: crashHook(c.getenv), Manager: c.manager,
	}
	terminal := false
	if f, ok := c.stderr.(*os.File); ok && c.o.output == "text" && term.IsTerminal(int(f.Fd())) {
		terminal = true
		var done atomic.Int64
		total := len(p.Actions)
		o.Progress = func(a plan.Action, n int64, took time.Duration) {
			verb := "extracted"
			if a.Op == plan.Fetch {
				verb = "fetched and extracted"
			}
			fmt.Fprintf(c.stderr, "[%d/%d] %s %s %s: %.1f MB in %s (%.0f MB/s)\n", done.Add(1), total, verb, a.Tool, a.PackageVersion(),
				float64(n)/1e6, took.Round(time.Millisecond), float64(n)/1e6/max(took.Seconds(), 1e-3))
		}
	}
	if slices.ContainsFunc(p.Actions, func(a plan.Action) bool { return a.Op == plan.Download }) {
		f, err := c.fetcher(terminal)
		if err != nil {
			return o, err
		}
		o.Fetcher = f
	}
	return o, nil
}

// fetcher is the run's one downloader, built only for a plan that
// downloads: registry credentials come from the docker config of the
// environment the run was given ($DOCKER_CONFIG, else ~/.docker).
func (c *command) fetcher(terminal bool) (*source.Fetcher, error) {
	so := c.o.download
	so.CAFile, so.Logger = c.o.caFile, c.log
	if dir := c.getenv("DOCKER_CONFIG"); dir != "" {
		so.DockerConfig = filepath.Join(dir, "config.json")
	} else if home := c.getenv("HOME"); home != "" {
		so.DockerConfig = filepath.Join(home, ".docker", "config.json")
	}
	if terminal {
		var last atomic.Int64
		so.Progress = func(done, total int64) {
			// A line every few seconds, and the last one.
			now := time.Now().UnixMilli()
			if prev := last.Load(); (now-prev < 2000 || !last.CompareAndSwap(prev, now)) && done != total {
				return
			}
			if total < 0 {
				fmt.Fprintf(c.stderr, "downloading: %.1f MB\n", float64(done)/1e6)
			} else {
				fmt.Fprintf(c.stderr, "downloading: %.1f of %.1f MB\n", float64(done)/1e6, float64(total)/1e6)
			}
		}
	}
	f, err := source.New(so)
	if err != nil {
		return nil, badInput("--ca-file: %v", err)
	}
	return f, nil
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
		return view.PlanJSON(c.stdout, p)
	}
	return view.PlanText(c.stdout, p, m.Distros())
}

func (c *command) printResults(p *plan.Plan, results []plan.Result, applyErr error, code int) error {
	if c.o.output == "json" {
		return view.AppliedJSON(c.stdout, p, results, applyErr, code)
	}
	return view.AppliedText(c.stdout, p, results, applyErr)
}

func (c *command) verify(ctx context.Context, root *os.Root, m *manifest.Manifest, req plan.Request) (int, error) {
	checks, err := verify.Run(ctx, root, m, req.Distro, req.Arch, verify.Options{Targets: c.o.targets, K8sVersion: req.K8sVersion, Exec: c.o.exec, HostArch: platform.Host(),
		RequireManifestVersion: req.RequireManifestVersion})
	if err != nil {
		return ExitFailure, err
	}
	v := view.Verify{Checked: view.CheckedVersioned, Checks: checks}
	if c.o.targets {
		v.Checked, v.K8sVersion = view.CheckedTargets, req.K8sVersion.String()
	}
	if c.o.output == "json" {
		err = view.VerifyJSON(c.stdout, v)
	} else {
		err = view.VerifyText(c.stdout, v)
	}
	if err != nil {
		return ExitFailure, err
	}
	if failed := v.Failed(); failed > 0 {
		return ExitVerify, fmt.Errorf("verify: %d of %d binaries differ from the manifest", failed, len(checks))
	}
	return ExitOK, nil
}

// extractLimits are the package limits of one run. The decoder slots are
// shared by every extraction of the run, so that memory stays bounded by
// two decoders whatever --parallel and the core count are.
func extractLimits() pkgfile.Limits {
	l := pkgfile.DefaultLimits
	l.Decoders = pkgfile.NewDecoderSlots(2)
	return l
}
