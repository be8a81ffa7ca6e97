package pkgmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// CommandError is a package-manager command that failed, with what it
// printed, so the caller can show the tool's own explanation.
type CommandError struct {
	Cmd    []string // name and arguments
	Output string   // standard error, then standard output; the last 8 KiB
	Err    error    // usually an *exec.ExitError
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Cmd, " "), e.Err)
	if out := lastLines(e.Output, 10); out != "" {
		msg += ": " + out
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// lastLines keeps an error message readable: the tools print progress first
// and the reason last.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

const maxOutput = 8 << 10

// execRunner runs real commands.
type execRunner struct{}

func (execRunner) Run(ctx context.Context, c Command) ([]byte, error) {
	name, args := c.Name, c.Args
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.Dir
	// The tools' messages are parsed (to tell "not offered" from a network
	// failure), so they must not be translated.
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "LANG=C", "LANGUAGE="), c.Env...)
	// apt-get starts method processes (http, file) that inherit the pipes; a
	// process group lets a cancelled ctx stop them all, and SIGTERM lets apt
	// remove its partial files.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := stderr.String()
		if stdout.Len() > 0 {
			out += "\n" + stdout.String()
		}
		if len(out) > maxOutput {
			out = out[len(out)-maxOutput:]
		}
		return stdout.Bytes(), &CommandError{Cmd: append([]string{name}, args...), Output: out, Err: err}
	}
	return stdout.Bytes(), nil
}

// commander runs one tool with the options' extra arguments, retries and
// deadline; apt, dnf and tdnf share it.
type commander struct {
	runner  Runner
	extra   []string
	root    string // absolute host path; "/" is the node itself
	sources []string
	testing []string
	repos   []string
	retries int
	backoff time.Duration
	limit   time.Duration
	log     *slog.Logger
}

func newCommander(o Options) *commander {
	c := &commander{runner: o.Runner, extra: slices.Clone(o.ExtraArgs), root: o.Root,
		sources: slices.Clone(o.Sources), testing: slices.Clone(o.TestingSources), repos: slices.Clone(o.Repos),
		retries: o.Retries, backoff: o.Backoff, limit: o.Deadline, log: o.Logger}
	c.root = filepath.Clean("/" + c.root) // New has refused a relative root
	if c.runner == nil {
		c.runner = execRunner{}
	}
	switch {
	case c.retries == 0:
		c.retries = defaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.backoff <= 0 {
		c.backoff = defaultBackoff
	}
	if c.limit <= 0 {
		c.limit = defaultDeadline
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// hostRoot reports whether the tool works on the node itself, with its own
// configuration, rather than on a root directory such as a mounted image.
func (c *commander) hostRoot() bool { return c.root == "/" }

// withPrivateDir calls fn with a fresh directory only root can enter, for
// the tools' configuration, removed afterwards.
func (c *commander) withPrivateDir(fn func(dir string) error) error {
	dir, err := privateDir("reconcile-pm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return fn(dir)
}

// withDeadline bounds one Manager call; inside Fetch the outer, equal
// deadline is already shorter.
func (c *commander) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.limit)
}

// run runs name with the extra arguments before args in dir ("" for the
// current directory) with env added to the environment. A failure is retried
// with doubling backoff unless final says the tool's output is an answer
// rather than an accident (a package or version that does not exist), or the
// command cannot run at all, or ctx is done. Unknown failures are retried:
// network, proxy, mirror and lock failures are reported in too many ways to
// list, and a bounded retry of a deterministic failure costs only time.
func (c *commander) run(ctx context.Context, dir string, env []string, final func(output string) bool, name string, args ...string) ([]byte, error) {
	cmd := Command{Dir: dir, Env: env, Name: name, Args: append(slices.Clone(c.extra), args...)}
	wait := c.backoff
	for attempt := 1; ; attempt++ {
		c.log.DebugContext(ctx, "running package manager", "cmd", name, "args", cmd.Args, "env", env, "dir", dir, "attempt", attempt)
		out, err := c.runner.Run(ctx, cmd)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("giving up on %s: %w (last failure: %w)", name, context.Cause(ctx), err)
		}
		if permanent(err, final) || attempt > c.retries {
			return nil, err
		}
		c.log.WarnContext(ctx, "package manager failed, retrying", "cmd", name, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("giving up on %s: %w (last failure: %w)", name, context.Cause(ctx), err)
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

func permanent(err error, final func(string) bool) bool {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return true
	}
	var ce *CommandError
	return errors.As(err, &ce) && final != nil && final(ce.Output)
}

// containsAny reports whether s holds one of the substrings; used only on the
// tools' error messages, never on versions.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
