//go:build !reconcile_testhooks

package cli

import "github.com/nodeimage/reconcile/internal/plan"

// crashHook is the crash tests' kill switch, absent from real builds (see
// crashhook.go).
func crashHook(func(string) string) func(plan.Action) { return nil }
