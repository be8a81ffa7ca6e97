// Command reconcile keeps a node image's Kubernetes binaries in the state a
// components manifest declares. See `reconcile --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nodeimage/reconcile/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
