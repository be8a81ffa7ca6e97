package manifest

import (
	"testing"

	"github.com/nodeimage/reconcile/internal/platform"
)

// "v1.35.7" and "1.35.7" are the same cluster version, but serving is keyed
// by the text: two entries of one tool serving 1.35.7 pass validation, and
// boot silently takes the first.
func TestLeadingVServedTwiceNotDetected(t *testing.T) {
	_, err := Parse("m.yaml", []byte(`components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", k8sVersion: "v1.35.7"}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.8-ubuntu24.04u1", k8sVersion: "1.35.7"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", k8sVersion: "v1.35.7"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.8-ubuntu24.04u1", k8sVersion: "1.35.7"}
`))
	if err == nil {
		t.Errorf("two kubelet entries serve 1.35.7 (written v1.35.7 and 1.35.7): no problem reported")
	}
}

// The same spelled differently for kubelet and kubectl is reported as a
// mismatch.
func TestLeadingVFalseMismatch(t *testing.T) {
	_, err := Parse("m.yaml", []byte(`components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", k8sVersion: "v1.35.7"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`))
	if err != nil {
		t.Errorf("kubelet and kubectl both serve 1.35.7: %v", err)
	}
}

// Nothing stops two tools from sharing a target, a target on the state
// record, or a target that is a versioned path.
func TestOverlappingPathsValidate(t *testing.T) {
	for _, tools := range []string{
		"  kubectl: {target: /opt/bin/kubelet}\n",
		"  kubelet: {target: /var/lib/reconcile/state.json}\n",
		"  kubelet: {target: /opt/bin/kubelet-1.35.7}\n",
	} {
		m, err := Parse("m.yaml", []byte("tools:\n"+tools+`components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`))
		if err == nil {
			es := m.Entries(platform.Distro{ID: "ubuntu", VersionID: "24.04"}, platform.AMD64)
			t.Errorf("accepted %q: targets %s %s", tools, es[0].Target, es[1].Target)
		}
	}
}
