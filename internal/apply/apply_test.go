package apply_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/apply"
	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/observe"
	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgfile"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
	"github.com/nodeimage/reconcile/internal/state"
)

// tools are the bake's entries, smallest package first in the manifest:
// a real ELF binary each, followed by that many KiB of incompressible
// bytes, so that the packages' sizes follow the padding.
var tools = []struct {
	name   string
	padKiB int
}{{"runc", 16}, {"crictl", 64}, {"containerd", 256}}

// bakePlan puts a real deb per tool into root's caches and plans a bake of
// them, as the command line does.
func bakePlan(t *testing.T, dir string, root *os.Root) *plan.Plan {
	t.Helper()
	pkgbuild.RequireFormat(t, platform.Deb)
	bin, err := pkgbuild.Binary(platform.AMD64, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	var m strings.Builder
	m.WriteString("components:\n")
	rng := rand.NewChaCha8([32]byte{})
	for _, tool := range tools {
		pad := make([]byte, tool.padKiB<<10)
		rng.Read(pad)
		cache := filepath.Join(dir, "root", "opt", tool.name, "downloads")
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := pkgbuild.Deb(cache, pkgbuild.Spec{
			Name: tool.name, Version: "1.2.3-1", Arch: platform.AMD64, Compression: "zstd",
			Files: map[string][]byte{"usr/bin/" + tool.name: append(slices.Clip(bin), pad...)},
		}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&m, "  - {tool: %s, distro: ubuntu-24.04, packageVersion: \"1.2.3-1\", k8sVersion: \"*\", arches: [amd64]}\n", tool.name)
	}
	man, err := manifest.Parse("components.yaml", []byte(m.String()))
	if err != nil {
		t.Fatal(err)
	}
	distro, err := platform.ParseDistro("ubuntu-24.04")
	if err != nil {
		t.Fatal(err)
	}
	req := plan.Request{Mode: plan.Bake, Distro: distro, Arch: platform.AMD64, Offline: true}
	ctx := context.Background()
	q := plan.Query(man, req)
	st, err := observe.Observe(ctx, root, q)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Compute(man, st, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := observe.OpenPackages(ctx, root, st, p.PackagesNeeded(st), q.DepsOf); err != nil {
		t.Fatal(err)
	}
	if p, err = plan.Compute(man, st, req); err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != len(tools) {
		t.Fatalf("planned %d actions, want an extraction per tool: %v", len(p.Actions), p.Actions)
	}
	return p
}

func openRoot(t *testing.T) (string, *os.Root) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, rootfstest.Open(t, filepath.Join(dir, "root"))
}

func options(root *os.Root, parallel int) apply.Options {
	l := pkgfile.DefaultLimits
	l.Decoders = pkgfile.NewDecoderSlots(2)
	return apply.Options{Root: root, Parallel: parallel, Limits: l}
}

// On one worker the extractions start biggest package first, whatever the
// manifest's order, and the one record written names every binary as it is
// on disk.
func TestBakeLongestFirst(t *testing.T) {
	dir, root := openRoot(t)
	p := bakePlan(t, dir, root)
	results, err := apply.Apply(context.Background(), p, options(root, 1))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(results, func(a, b plan.Result) int { return a.Start.Compare(b.Start) })
	var started, want []string
	for _, res := range results {
		started = append(started, res.Action.Tool)
	}
	for i := range tools {
		want = append(want, tools[len(tools)-1-i].name)
	}
	if !slices.Equal(started, want) {
		t.Errorf("extractions started in the order %v, want the biggest package first: %v", started, want)
	}
	rec, err := observe.LoadRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		got, err := rootfs.DigestFile(root, rootfs.Rel(res.Action.Path))
		if err != nil {
			t.Fatal(err)
		}
		if b := rec.Files[res.Action.Path]; b.SHA256 != got.SHA256 || b.Size != got.Size {
			t.Errorf("the record names %s as sha256 %s (%d bytes), the file is %s (%d bytes)", res.Action.Path, b.SHA256, b.Size, got.SHA256, got.Size)
		}
	}
}

// A record that cannot be written fails every extraction whose binary it
// would have named: the binaries are in place, but no record claims them,
// so the next bake extracts them again.
func TestBakeRecordUnwritable(t *testing.T) {
	dir, root := openRoot(t)
	p := bakePlan(t, dir, root)
	// A directory where the record goes: its rename onto it fails.
	if err := root.MkdirAll(state.RecordPath+"/x", 0o755); err != nil {
		t.Fatal(err)
	}
	results, err := apply.Apply(context.Background(), p, options(root, 2))
	if err == nil {
		t.Fatal("bake succeeded with a record it cannot write")
	}
	if len(results) != len(tools) {
		t.Fatalf("%d results, want %d", len(results), len(tools))
	}
	for _, res := range results {
		if res.Err == nil || !strings.Contains(res.Err.Error(), "writing state record") {
			t.Errorf("%s: err %v, want the record's write error", res.Action.Path, res.Err)
		}
		if _, err := root.Lstat(rootfs.Rel(res.Action.Path)); err != nil {
			t.Errorf("%s: %v, want the extracted binary in place", res.Action.Path, err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "root", filepath.Dir(state.RecordPath))); err != nil {
		t.Fatal(err)
	} else if len(ents) != 1 {
		t.Errorf("%s holds %d entries, want only the directory in the record's way (no temp file)", filepath.Dir(state.RecordPath), len(ents))
	}
}
