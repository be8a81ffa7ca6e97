package manifest_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/rootfs"
)

var ubuntu2404 = platform.Distro{ID: "ubuntu", VersionID: "24.04"}

// TestSourceEntries: url and oci entries resolve per arch, with ${arch} and
// ${version} substituted, the digest of that arch, and the versioned binary
// named by the version; kubelet and kubectl of one tarball share it.
func TestSourceEntries(t *testing.T) {
	t.Parallel()
	m, err := manifest.Load("testdata/valid-sources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const g = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	for _, tt := range []struct {
		arch                          platform.Arch
		digest                        string
		kubeletURL, providerRef, want string
	}{
		{platform.AMD64, "sha256:" + h, "https://dl.k8s.io/v1.34.9/kubernetes-node-linux-amd64.tar.gz",
			"mcr.microsoft.com/oss/binaries/kubernetes/azure-acr-credential-provider:v1.32.5-linux-amd64", "kubelet kubectl kubelet kubectl azure-acr-credential-provider"},
		{platform.ARM64, "sha256:" + g, "https://dl.k8s.io/v1.34.9/kubernetes-node-linux-arm64.tar.gz",
			"mcr.microsoft.com/oss/binaries/kubernetes/azure-acr-credential-provider:v1.32.5-linux-arm64", "kubelet kubectl kubelet kubectl azure-acr-credential-provider crictl"},
	} {
		es := m.Entries(ubuntu2404, tt.arch)
		var tools []string
		for _, e := range es {
			tools = append(tools, e.Tool)
		}
		if got := strings.Join(tools, " "); got != tt.want {
			t.Fatalf("%s: entries %s, want %s", tt.arch, got, tt.want)
		}
		kubelet, kubectl, pkg, provider := es[0], es[1], es[2], es[4]
		if kubelet.Source != manifest.FromURL || kubelet.URL != tt.kubeletURL || kubelet.Digest != tt.digest ||
			kubelet.Path != "kubernetes/node/bin/kubelet" || !slices.Equal(kubelet.BinaryPaths, []string{kubelet.Path}) ||
			kubelet.Versioned != "/opt/bin/kubelet-1.34.9" || kubelet.Version.Upstream != "1.34.9" || kubelet.K8s != "1.34.9" || !kubelet.Exact() ||
			kubelet.Ref != "" || kubelet.Target != "/opt/bin/kubelet" || kubelet.ExitCode != 121 || kubelet.CacheDir != "/opt/kubelet/downloads" {
			t.Errorf("%s kubelet: %+v", tt.arch, kubelet)
		}
		if kubectl.Path != "kubernetes/node/bin/kubectl" || kubectl.Artifact() != kubelet.Artifact() || kubelet.Artifact() == "" {
			t.Errorf("%s kubectl: path %q, artifact %q (kubelet's %q)", tt.arch, kubectl.Path, kubectl.Artifact(), kubelet.Artifact())
		}
		if pkg.Source != manifest.FromPackage || pkg.Digest != "" || pkg.Artifact() != "" || pkg.Path != "" {
			t.Errorf("%s package entry: %+v", tt.arch, pkg)
		}
		if provider.Source != manifest.FromOCI || provider.Ref != tt.providerRef || provider.Digest != tt.digest || provider.URL != "" ||
			provider.Versioned != "/opt/bin/azure-acr-credential-provider-1.32.5" || provider.K8s != "1.32" {
			t.Errorf("%s provider: %+v", tt.arch, provider)
		}
		for _, v := range []string{"1.34.9", "1.35.7"} {
			for _, tool := range []string{"kubelet", "kubectl"} {
				if _, ok := manifest.Resolve(es, tool, semver.MustParse(v)); !ok {
					t.Errorf("%s: no %s for %s", tt.arch, tool, v)
				}
			}
		}
	}
	if !m.RequiresManifestVersion() {
		t.Error("requireManifestVersion: true not read")
	}
	if got := m.Fetch(ubuntu2404); !slices.Equal(got.AptSources, []string{"/etc/apt/sources.list.d/microsoft-prod.list"}) ||
		!slices.Equal(got.AptTestingSources, []string{"/etc/apt/sources.list.d/microsoft-prod-testing.list"}) || got.DnfRepos != nil {
		t.Errorf("Fetch(ubuntu-24.04) = %+v", got)
	}
	if got := m.Fetch(platform.Distro{ID: "azurelinux", VersionID: "3.0"}); !slices.Equal(got.DnfRepos, []string{"azurelinux-official-base", "azurelinux:cloud-native_1.0"}) {
		t.Errorf("Fetch(azurelinux-3.0) = %+v", got)
	}
	if got := m.Fetch(platform.Distro{ID: "debian", VersionID: "12"}); got.AptSources != nil || got.DnfRepos != nil {
		t.Errorf("Fetch of a distro without settings = %+v", got)
	}
	min, err := manifest.Load("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if min.RequiresManifestVersion() {
		t.Error("requireManifestVersion defaults to true")
	}
}

// TestResolveRanks: an exact version beats a minor line, which beats a
// constraint; a constraint serves a pre-release of a line it admits.
func TestResolveRanks(t *testing.T) {
	t.Parallel()
	m, err := manifest.Load("testdata/valid-constraints.yaml")
	if err != nil {
		t.Fatal(err)
	}
	es := m.Entries(ubuntu2404, platform.AMD64)
	for _, tt := range []struct{ tool, k8s, want string }{
		{"runc", "1.33.0", "1.4.3-ubuntu24.04u2"},
		{"runc", "1.34.10", "1.4.3-ubuntu24.04u2"},
		{"runc", "1.35.1", "1.4.5-ubuntu24.04u1"}, // the minor line beats ">= 1.33, < 1.36"
		{"runc", "1.35.7", "1.4.6-ubuntu24.04u1"}, // the exact version beats both
		{"runc", "1.36.0-rc.1", "1.4.4-ubuntu24.04u1"},
		{"runc", "1.36.2", "1.4.4-ubuntu24.04u1"},
		{"runc", "1.32.9", ""},
		{"containerd", "1.28.0", "2.3.3-ubuntu24.04u2"},
		{"containerd", "1.40.0-alpha.1", "2.3.3-ubuntu24.04u2"},
		{"crictl", "1.34.3", "1.34.0-ubuntu24.04u1"},
		{"crictl", "1.33.1", "1.35.0-ubuntu24.04u1"},
		{"crictl", "1.37.0", "1.35.0-ubuntu24.04u1"},
		{"crictl", "2.0.0", ""},
	} {
		e, ok := manifest.Resolve(es, tt.tool, semver.MustParse(tt.k8s))
		if got := e.Version.String(); ok != (tt.want != "") || ok && got != tt.want {
			t.Errorf("Resolve(%s, %s) = %s, %v; want %q", tt.tool, tt.k8s, got, ok, tt.want)
		}
	}
	c := es[slices.IndexFunc(es, func(e manifest.Entry) bool { return e.Tool == "containerd" })]
	if !c.Constraint() || c.Exact() || c.K8s != "*" {
		t.Errorf("containerd: constraint %v, exact %v, K8s %q", c.Constraint(), c.Exact(), c.K8s)
	}
	if got := manifest.Served(es, "runc"); !slices.Equal(got, []string{">= 1.33, < 1.36", ">= 1.36", "1.35", "1.35.7"}) {
		t.Errorf("Served(runc) = %q", got)
	}
	if got := m.Tool("runc").BinaryPaths; !slices.Equal(got, []string{"usr/sbin/runc", "usr/bin/runc"}) {
		t.Errorf("runc binaryPaths %v", got)
	}
}

// TestKubeletKubectlConstraints: the same-set rule compares constraints by
// their text, so kubelet and kubectl written alike pass, and written
// differently fail even when they admit the same versions.
func TestKubeletKubectlConstraints(t *testing.T) {
	t.Parallel()
	const base = "components:\n" +
		"  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.34.10-ubuntu24.04u1\", k8sVersion: \">= 1.34, < 1.35\"}\n"
	if _, err := manifest.Parse("m.yaml", []byte(base+
		"  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: \"1.34.10-ubuntu24.04u1\", k8sVersion: \">=  1.34,  < 1.35\"}\n")); err != nil {
		t.Errorf("same constraint, spaced differently: %v", err)
	}
	_, err := manifest.Parse("m.yaml", []byte(base+
		"  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: \"1.34.10-ubuntu24.04u1\", k8sVersion: \"1.34\"}\n"))
	if err == nil || !strings.Contains(err.Error(), "kubelet serves [>= 1.34, < 1.35] but kubectl serves [1.34]") {
		t.Errorf("kubelet by constraint, kubectl by minor line: %v", err)
	}
}

// TestErrorReport: the problems as report items, one per problem, with the
// problem's code, path, line, tool, entry index and text.
func TestErrorReport(t *testing.T) {
	t.Parallel()
	_, err := manifest.Parse("m.yaml", []byte("tools:\n  kubelet: {exitCode: 0100}\ncomponents:\n"+
		"  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.30\"}\n"+
		"  - {tool: kubectl, distro: ubuntu-24.04, version: \"1.30.1\", url: \"https://example.com/k.tgz\", path: k}\n"))
	var merr *manifest.Error
	if !errors.As(err, &merr) {
		t.Fatalf("%T %v", err, err)
	}
	r := merr.Report()
	if len(r) != len(merr.Problems) || len(r) != 3 {
		t.Fatalf("%d items for %d problems: %v", len(r), len(merr.Problems), err)
	}
	want := []struct {
		code, path, tool string
		line, entry      int
	}{
		{manifest.CodeYAML11, "tools.kubelet.exitCode", "", 2, -1},
		{manifest.CodeInvalid, "components[0].packageVersion", "kubelet", 4, 0},
		{manifest.CodeDigest, "components[1].sha256", "kubectl", 5, 1},
	}
	for i, it := range r {
		w := want[i]
		entry := -1
		if it.Entry != nil {
			entry = *it.Entry
		}
		if it.Kind != report.Error || it.Code != w.code || it.Path != w.path || it.Tool != w.tool || it.Line != w.line || entry != w.entry ||
			it.String() != merr.Problems[i].String() {
			t.Errorf("item %d = %+v (entry %d), %q; want %+v, %q", i, it, entry, it.String(), w, merr.Problems[i])
		}
	}
}

func TestHandBuiltEntryServesNothing(t *testing.T) {
	if (manifest.Entry{}).Serves(semver.MustParse("1.34.10")) {
		t.Error("a zero Entry serves 1.34.10")
	}
	if _, ok := manifest.Resolve([]manifest.Entry{{Tool: "kubelet"}}, "kubelet", semver.MustParse("1.34.10")); ok {
		t.Error("Resolve picked a zero Entry")
	}
}

// The temp-file prefix the manifest refuses is the one rootfs writes.
func TestTempPrefixIsRootfs(t *testing.T) {
	if manifest.TempPrefix != rootfs.TempPrefix {
		t.Errorf("manifest.TempPrefix %q, rootfs.TempPrefix %q", manifest.TempPrefix, rootfs.TempPrefix)
	}
}
