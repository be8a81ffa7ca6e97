package manifest

import (
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

func TestUnlisted(t *testing.T) {
	m, err := Parse("c.yaml", []byte(`components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.34.10-ubuntu24.04u1"}
  - {tool: azure-acr-credential-provider, distro: ubuntu-24.04, packageVersion: "1.34.13-ubuntu24.04u1", k8sVersion: "1.34"}
  - {tool: runc, distro: ubuntu-24.04, packageVersion: "1.4.3-ubuntu24.04u2", k8sVersion: "*"}
`))
	if err != nil {
		t.Fatal(err)
	}
	entries := m.Entries(platform.Distro{ID: "ubuntu", VersionID: "24.04"}, platform.ARM64)
	for _, tc := range []struct {
		tool, k8s, versioned string
	}{
		{"kubelet", "1.35.2", "/opt/bin/kubelet-1.35.2"},
		{"kubectl", "1.36.0-rc.1", "/opt/bin/kubectl-1.36.0~rc.1"},
		{"azure-acr-credential-provider", "1.35.2", ""},
		{"runc", "1.35.2", ""},
	} {
		e, ok := Unlisted(entries, tc.tool, semver.MustParse(tc.k8s))
		if ok != (tc.versioned != "") || ok && (e.Versioned != tc.versioned || e.Index != -1 || e.Version.Format != "" ||
			e.Target != "/opt/bin/"+tc.tool || e.Arch != platform.ARM64 || e.Serves(semver.MustParse(tc.k8s))) {
			t.Errorf("Unlisted(%s, %s) = %+v, %v; want versioned %q", tc.tool, tc.k8s, e, ok, tc.versioned)
		}
	}
}

func TestSameUpstream(t *testing.T) {
	for _, tc := range []struct {
		f    platform.Format
		v    string
		same bool
	}{
		{platform.Deb, "1.34.1-2", true},
		{platform.Deb, "1.34.01-3", true},
		{platform.Deb, "1:1.34.1-1", true},
		{platform.Deb, "1.34.10-1", false},
		{platform.Deb, "1.34.1~rc.1-1", false},
		{platform.RPM, "1.34.1-3.azl3", true},
		{platform.RPM, "1.34.11-1.azl3", false},
	} {
		if got := SameUpstream(pkgversion.MustParse(tc.f, tc.v), "1.34.1"); got != tc.same {
			t.Errorf("SameUpstream(%s, 1.34.1) = %v", tc.v, got)
		}
	}
}
