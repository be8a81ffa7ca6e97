package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/platform"
)

// TestBootOpensNoPackageWhenBinariesAreIntact: boot from intact versioned
// binaries reads no cached package (a broken one in the cache is never
// opened, so the plan has nothing to say of it), yet still removes the
// caches; with --enforce-package-install it opens them and says so.
func TestBootOpensNoPackageWhenBinariesAreIntact(t *testing.T) {
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`)
	for _, tool := range []string{"kubelet", "kubectl"} {
		cache(t, root, tool, pkg(t, platform.Deb, tool, "1.35.7-ubuntu24.04u1", platform.AMD64), "")
	}
	args := []string{"--root", root, "--arch", "amd64", manifest}
	run(t, nil, append([]string{"--mode=bake"}, args...)...).must(t, ExitOK)
	writeFile(t, filepath.Join(root, "opt/kubelet/downloads/broken.deb"), "not a package")
	codes := func(extra ...string) (string, []string) {
		r := run(t, nil, append(append([]string{"--dry-run", "--output", "json", "--mode=boot", "--k8s-version", "1.35.7"}, extra...), args...)...).must(t, ExitOK)
		var doc struct {
			Actions []struct{ Op string }
			Report  []struct{ Code string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		var ops, cs []string
		for _, a := range doc.Actions {
			ops = append(ops, a.Op)
		}
		for _, it := range doc.Report {
			cs = append(cs, it.Code)
		}
		return strings.Join(ops, " "), cs
	}
	ops, cs := codes()
	if ops != "install install remove_cache remove_cache" || strings.Contains(strings.Join(cs, " "), "package_") {
		t.Errorf("boot from intact binaries: actions %q, report %v; want two installs, two cache removals and no word of the broken package", ops, cs)
	}
	ops, cs = codes("--enforce-package-install")
	if !strings.Contains(ops, "extract") || !strings.Contains(strings.Join(cs, " "), "package_unreadable") {
		t.Errorf("enforced boot: actions %q, report %v; want extractions and the broken package noted", ops, cs)
	}
}
