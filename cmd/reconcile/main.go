// Command reconcile keeps a node image's Kubernetes binaries in the state a
// components manifest declares. See `reconcile --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/nodeimage/reconcile/internal/cli"
)

func main() {
	// A soft limit keeps a bake of several xz packages at once near 32 MiB
	// (the decoders' dictionaries are reused, the rest is short-lived);
	// GOMEMLIMIT in the environment still decides when it is set.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(32 << 20)
	}
	// Under that limit, collect at 3× the live heap, not 2×: planning a
	// 1,000-entry manifest spent 15% of its time in the collector, while an
	// extraction makes so little garbage that its peak RSS is the same
	// (bench/pkgfile.sh). GOGC in the environment still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
