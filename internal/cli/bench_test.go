package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDryRun is the whole of `reconcile --dry-run` but the process
// start-up, on the 1,000-entry manifest of bench/dryrun.sh (kubelet and
// kubectl pairs) and an empty root: the profile to read for its cost
// (go test -bench DryRun -cpuprofile).
func BenchmarkDryRun(b *testing.B) {
	dir := b.TempDir()
	var m strings.Builder
	m.WriteString("components:\n")
	for i := range 500 {
		for _, tool := range []string{"kubelet", "kubectl"} {
			fmt.Fprintf(&m, "  - {tool: %s, distro: ubuntu-24.04, packageVersion: \"1.%d.%d-ubuntu24.04u1\"}\n", tool, 30+i/100, i%100)
		}
	}
	manifest := filepath.Join(dir, "components.yaml")
	if err := os.WriteFile(manifest, []byte(m.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	args := []string{"--dry-run", "--distro", "ubuntu-24.04", "--arch", "amd64", "--root", root, manifest}
	b.ReportAllocs()
	for b.Loop() {
		var stderr strings.Builder
		if code := Run(context.Background(), args, func(string) string { return "" }, nil, io.Discard, &stderr); code != ExitOK {
			b.Fatalf("exit %d: %s", code, stderr.String())
		}
	}
}
