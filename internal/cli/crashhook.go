//go:build reconcile_testhooks

package cli

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/nodeimage/reconcile/internal/plan"
)

// crashHook supports the crash-safety tests: RECONCILE_TEST_KILL_AFTER=N
// kills the process with SIGKILL right after its Nth action. Only a binary
// built with -tags reconcile_testhooks has it (reliability/ builds one): a
// stray variable on a node cannot kill a real boot.
func crashHook(getenv func(string) string) func(plan.Action) {
	n, err := strconv.Atoi(getenv("RECONCILE_TEST_KILL_AFTER"))
	if err != nil || n < 1 {
		return nil
	}
	var done atomic.Int64
	return func(plan.Action) {
		if done.Add(1) == int64(n) {
			fmt.Fprintf(os.Stderr, "reconcile: RECONCILE_TEST_KILL_AFTER=%d: killing myself\n", n)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}
