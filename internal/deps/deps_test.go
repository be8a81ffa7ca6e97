package deps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
)

func missing(r Result) []string {
	var out []string
	for d := range r.Missing {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func TestDebAgainstDpkgStatus(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte(`Package: iptables
Status: install ok installed
Version: 1.8.9-2
Provides: xtables

Package: nftables
Status: deinstall ok config-files
Version: 1.0.6-2

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
Description: a long
 description, continued: Status: install ok installed
`), 0o644)
	deps := []string{"iptables (>= 1.8)", "libc6:amd64 (>= 2.34)", "conntrack", "nftables", "ebtables | xtables", "socat | ethtool"}
	r, err := Check(context.Background(), rootfstest.Open(t, dir), platform.Deb, deps)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"conntrack", "nftables", "socat | ethtool"}; !r.Checked || !slices.Equal(missing(r), want) {
		t.Errorf("missing %v (checked %v), want %v", missing(r), r.Checked, want)
	}
}

func TestNoDatabaseMeansUnknown(t *testing.T) {
	root := rootfstest.Open(t, t.TempDir())
	for _, f := range []platform.Format{platform.Deb, platform.RPM} {
		r, err := Check(context.Background(), root, f, []string{"conntrack"})
		if err != nil || r.Checked || len(r.Missing) != 0 || r.Why == "" {
			t.Errorf("%s: %+v %v: want unchecked with a reason", f, r, err)
		}
	}
}

// TestRPMAgainstItsDatabase registers a real package (only in the database:
// --justdb, no files, no scripts) under a temp root and asks rpm.
func TestRPMAgainstItsDatabase(t *testing.T) {
	root := rpmRoot(t, pkgbuild.Spec{Name: "iptables", Version: "1.8.10-1.azl3", Arch: platform.AMD64,
		Files: map[string][]byte{"usr/sbin/iptables": []byte("x")}})
	r, err := Check(context.Background(), root, platform.RPM, []string{"iptables >= 1.8", "conntrack-tools", "/usr/sbin/iptables"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"conntrack-tools"}; !r.Checked || !slices.Equal(missing(r), want) {
		t.Errorf("missing %v (checked %v, %s), want %v", missing(r), r.Checked, r.Why, want)
	}
}

// rpmRoot is a temp root with an rpm database in which specs are registered
// (--justdb: no files, no scripts).
func rpmRoot(t *testing.T, specs ...pkgbuild.Spec) *os.Root {
	t.Helper()
	pkgbuild.RequireFormat(t, platform.RPM)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	if out, err := exec.Command("rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--initdb").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, s := range specs {
		p, err := pkgbuild.RPM(dir, s)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", "--noscripts", "--force", p).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// One capability with two providers makes rpm print two lines for it; the
// missing one must still be found.
func TestRPMTwoProvidersOfOneCapability(t *testing.T) {
	root := rpmRoot(t,
		pkgbuild.Spec{Name: "iptables", Version: "1.8.9-1", Arch: platform.AMD64},
		pkgbuild.Spec{Name: "iptables", Version: "1.8.10-1", Arch: platform.AMD64},
		pkgbuild.Spec{Name: "conntrack", Version: "1.4.7-1", Arch: platform.AMD64})
	res, err := Check(context.Background(), root, platform.RPM, []string{"iptables", "conntrack", "ebtables"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if !res.Missing["ebtables"] {
		t.Errorf("ebtables is not installed but not reported missing (Checked=%v Why=%q)", res.Checked, res.Why)
	}
}

// A rich dependency "(iptables or nftables)" is satisfied by either.
func TestRPMRichDependency(t *testing.T) {
	root := rpmRoot(t, pkgbuild.Spec{Name: "iptables", Version: "1.8.9-1", Arch: platform.AMD64})
	dep := "(iptables or nftables)"
	res, err := Check(context.Background(), root, platform.RPM, []string{dep})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Missing[dep] {
		t.Errorf("%s reported missing though iptables is installed", dep)
	}
}

// FuzzParseStatus: dpkg's status file is the image's, untrusted; parsing
// it never panics, and every package it says is installed is named.
func FuzzParseStatus(f *testing.F) {
	f.Add("Package: libc6\nStatus: install ok installed\nProvides: libc6-dev (= 2.36), libc-dev\n\nPackage: conntrack\nStatus: deinstall ok config-files\n")
	f.Add("Package: a\nStatus: install ok installed\n Description continued: x\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseStatus(strings.NewReader(s))
		if err != nil {
			return
		}
		for name := range got {
			if name == "" {
				t.Fatalf("parseStatus(%q) names an empty package", s)
			}
		}
	})
}
