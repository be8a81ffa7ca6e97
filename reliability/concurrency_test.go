package reliability_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/platform"
)

var concurrent struct {
	runs, locked atomic.Int64
}

func reportConcurrency() {
	report("2 concurrency", "concurrency: %d runs in groups of 2 and 8 on one root (bake and boot): all exit 0, serialised by the lock (one applies, the others find nothing to do); %d runs that met a held lock with a short --lock-timeout exit 4 naming /%s",
		concurrent.runs.Load(), concurrent.locked.Load(), lockPath)
}

// TestConcurrentRuns starts 2 and 8 bake runs, and 2 and 8 boot runs, at
// once on one root, with the default (long) lock timeout: every run exits 0,
// exactly one applies the plan, and the result is the uninterrupted one.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"bake", "boot"} {
		c := newCrashCase(t, smallScenario(platform.Deb), mode)
		for _, n := range []int{2, 8} {
			t.Run(fmt.Sprintf("%s-%d", mode, n), func(t *testing.T) {
				root := copyRoot(t, c.start)
				var wg sync.WaitGroup
				results := make([]result, n)
				gate := make(chan struct{})
				for i := range n {
					wg.Go(func() {
						<-gate
						results[i] = run(t, nil, c.args(root)...)
					})
				}
				close(gate)
				wg.Wait()
				applied := 0
				for i, r := range results {
					if r.killed || r.code != 0 {
						t.Fatalf("run %d of %d: %s", i+1, n, r)
					}
					switch {
					case strings.Contains(r.stdout, mode+" done:"):
						applied++
					case !strings.Contains(r.stdout, "No changes"):
						t.Fatalf("run %d of %d neither applied nor found nothing to do:\n%s", i+1, n, r)
					}
				}
				if applied != 1 {
					t.Fatalf("%d of %d simultaneous runs applied the plan, want exactly 1 (the lock serialises them)", applied, n)
				}
				concurrent.runs.Add(int64(n))
				reportConcurrency()
				c.converge(t, fmt.Sprintf("%d simultaneous runs", n), root)
				c.reportFindings(t, 1)
				t.Logf("%s: %d simultaneous runs: all exit 0, 1 applied the plan, %d found nothing to do", c.name, n, n-1)
			})
		}
	}
}

// TestLockTimeout stops a real run while it holds the lock (SIGSTOP: a run
// as slow as need be, deterministically), then starts 1 and 7 more with a
// short --lock-timeout: each exits 4 with a message naming the lock, and
// changes nothing. Resumed, the held run finishes and the result is right.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"bake", "boot"} {
		c := newCrashCase(t, smallScenario(platform.Deb), mode)
		for _, n := range []int{2, 8} {
			t.Run(fmt.Sprintf("%s-%d", mode, n), func(t *testing.T) {
				var root string
				var holder *exec.Cmd
				var wait func() result
				for attempt := 1; holder == nil; attempt++ {
					root = copyRoot(t, c.start)
					holder, wait = holdLock(t, root, c.args(root))
					if holder == nil && attempt == 5 {
						t.Fatal("5 runs in a row ended before they could be stopped holding the lock")
					}
				}
				before := snapshot(t, root)
				var wg sync.WaitGroup
				results := make([]result, n-1)
				for i := range n - 1 {
					wg.Go(func() {
						args := append([]string{"--lock-timeout=50ms"}, c.args(root)...)
						results[i] = run(t, nil, args...)
					})
				}
				wg.Wait()
				for i, r := range results {
					if r.killed || r.code != 4 || !strings.Contains(r.stderr, "/"+lockPath) {
						t.Errorf("run %d of %d against a held lock: want exit 4 naming /%s, got %s", i+2, n, lockPath, r)
					}
				}
				if d := diff(before, snapshot(t, root), true); len(d) > 0 {
					t.Errorf("runs that did not get the lock changed the disk:\n  %s", strings.Join(d, "\n  "))
				}
				if err := holder.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				wait().must(t, 0)
				concurrent.locked.Add(int64(n - 1))
				reportConcurrency()
				// The same runs with the default timeout find nothing to do.
				c.converge(t, "after the held run", root)
				c.reportFindings(t, 1)
				t.Logf("%s: with a run holding the lock, %d others exited 4 after --lock-timeout=50ms: %s", c.name, n-1, firstLine(results[0].stderr))
			})
		}
	}
}

// holdLock starts reconcile with args and stops it (SIGSTOP) once it holds
// the root's lock; SIGCONT resumes it. It returns nil when the run ended
// before it could be stopped.
func holdLock(t *testing.T, root string, args []string) (*exec.Cmd, func() result) {
	t.Helper()
	cmd, wait := start(t, nil, args...)
	if !waitLocked(root, 10*time.Second) {
		cmd.Process.Kill()
		t.Fatalf("the run never took the lock: %s", wait())
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A thread inside a system call stops when it returns from it: wait until
	// every thread is stopped, so that the disk holds still.
	if !waitStopped(cmd.Process.Pid, 10*time.Second) {
		t.Fatalf("pid %d did not stop", cmd.Process.Pid)
	}
	if !lockHeld(root) {
		cmd.Process.Signal(syscall.SIGCONT)
		t.Logf("the run ended before it could be stopped holding the lock: %s", wait())
		return nil, nil
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGCONT) })
	return cmd, wait
}

// waitStopped polls until every thread of pid is stopped (or pid is gone).
func waitStopped(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := 0
		for _, task := range tasks {
			data, err := os.ReadFile(task)
			if err != nil {
				continue
			}
			// pid (comm) state ...: comm may hold spaces, the state follows the last ')'.
			rest := string(data[strings.LastIndexByte(string(data), ')')+1:])
			if f := strings.Fields(rest); len(f) > 0 && (f[0] == "T" || f[0] == "t" || f[0] == "Z") {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// waitLocked polls until another process holds the lock of root.
func waitLocked(root string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if lockHeld(root) {
			return true
		}
		time.Sleep(200 * time.Microsecond)
	}
	return false
}

// lockHeld reports whether some process holds the flock on root's lock file.
func lockHeld(root string) bool {
	f, err := os.Open(filepath.Join(root, lockPath))
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
