package plan_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/state"
	"github.com/nodeimage/reconcile/internal/view"
)

var (
	nodeDigest   = "sha256:" + strings.Repeat("a1", 32)
	layerDigest  = "sha256:" + strings.Repeat("b2", 32)
	crictlDigest = "sha256:" + strings.Repeat("c3", 32)
	otherDigest  = "sha256:" + strings.Repeat("d4", 32)
)

const nodeRef = "registry.example/oss/kubernetes-node:v1.34.9-linux-amd64"

var artifacts = `components:
  - {tool: kubelet, distro: ubuntu-24.04, version: "1.34.9", arches: [amd64], path: kubernetes/node/bin/kubelet,
     oci: "registry.example/oss/kubernetes-node:v${version}-linux-${arch}", digest: {amd64: "` + nodeDigest + `"}}
  - {tool: kubectl, distro: ubuntu-24.04, version: "1.34.9", arches: [amd64], path: kubernetes/node/bin/kubectl,
     oci: "registry.example/oss/kubernetes-node:v${version}-linux-${arch}", digest: {amd64: "` + nodeDigest + `"}}
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
  - {tool: crictl, distro: ubuntu-24.04, version: "1.34.0", k8sVersion: "*", arches: [amd64], path: crictl,
     url: "https://dl.example/crictl-v${version}-linux-${arch}.tar.gz", sha256: {amd64: "` + strings.Repeat("c3", 32) + `"}}
`

// downloaded adds the files a download of the kubernetes-node artifact
// leaves in dir.
func (d *disk) downloaded(dir string) *disk {
	layer := dir + "/sha256-" + strings.Repeat("b2", 32) + ".tar.gz"
	d.st.Artifacts[dir] = append(d.st.Artifacts[dir],
		state.Artifact{File: layer, Digest: layerDigest},
		state.Artifact{File: dir + "/sha256-" + strings.Repeat("a1", 32) + ".manifest.json", Digest: nodeDigest, Manifest: true, Layer: layer})
	return d
}

// bakedArtifact adds a versioned binary (or target) out of an artifact
// that matches the record.
func (d *disk) bakedArtifact(tool, version, digest, path string) *disk {
	d.baked(tool, version, path)
	b := d.st.Record.Files[path]
	b.Source = state.Source{Name: tool, Version: version, Digest: digest, Ref: nodeRef, Entry: "kubernetes/node/bin/" + tool}
	b.Depends = nil
	d.st.Record.Files[path] = b
	return d
}

func TestComputeArtifacts(t *testing.T) {
	m, err := manifest.Parse("artifacts.yaml", []byte(artifacts))
	if err != nil {
		t.Fatal(err)
	}
	bake := plan.Request{Mode: plan.Bake, Distro: ubuntu, Arch: platform.AMD64}
	boot := func(v string) plan.Request {
		return plan.Request{Mode: plan.Boot, Distro: ubuntu, Arch: platform.AMD64, K8sVersion: semver.MustParse(v), Manager: "apt-get"}
	}
	withArtifacts := func() *disk {
		d := newDisk()
		d.st.Artifacts = map[string][]state.Artifact{}
		return d
	}
	baked := func() *disk {
		return withArtifacts().downloaded("/opt/kubelet/downloads").
			bakedArtifact("kubelet", "1.34.9", nodeDigest, "/opt/bin/kubelet-1.34.9").
			bakedArtifact("kubectl", "1.34.9", nodeDigest, "/opt/bin/kubectl-1.34.9").
			bakedArtifact("crictl", "1.34.0", crictlDigest, "/opt/bin/crictl-1.34.0").
			baked("kubelet", "1.35.7-ubuntu24.04u1", "/opt/bin/kubelet-1.35.7").
			baked("kubectl", "1.35.7-ubuntu24.04u1", "/opt/bin/kubectl-1.35.7")
	}
	offline := bake
	offline.Offline = true
	tests := []struct {
		name   string
		disk   *disk
		req    plan.Request
		ops    []string
		errors []string // codes of the plan's errors
	}{
		{name: "bake-artifacts-empty-disk", disk: withArtifacts().cached("kubelet", "1.35.7-ubuntu24.04u1", platform.AMD64, "k.deb").
			cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "c.deb"), req: bake,
			ops: []string{"download /opt/kubelet/downloads", "extract /opt/bin/kubelet-1.34.9", "extract /opt/bin/kubectl-1.34.9",
				"extract /opt/bin/kubelet-1.35.7", "extract /opt/bin/kubectl-1.35.7", "download /opt/crictl/downloads", "extract /opt/bin/crictl-1.34.0"}},
		// kubectl finds the download in kubelet's cache dir.
		{name: "bake-artifacts-cached", req: bake, disk: withArtifacts().downloaded("/opt/kubelet/downloads").
			cached("kubelet", "1.35.7-ubuntu24.04u1", platform.AMD64, "k.deb").cached("kubectl", "1.35.7-ubuntu24.04u1", platform.AMD64, "c.deb"),
			ops: []string{"extract /opt/bin/kubelet-1.34.9", "extract /opt/bin/kubectl-1.34.9",
				"extract /opt/bin/kubelet-1.35.7", "extract /opt/bin/kubectl-1.35.7", "download /opt/crictl/downloads", "extract /opt/bin/crictl-1.34.0"}},
		{name: "bake-artifacts-offline", req: offline, disk: baked(),
			ops: []string{}},
		{name: "bake-artifacts-offline-missing", req: offline, disk: withArtifacts(),
			ops:    []string{"extract /opt/bin/kubelet-1.35.7", "extract /opt/bin/kubectl-1.35.7"},
			errors: []string{plan.CodeArtifactMissing, plan.CodeArtifactMissing, plan.CodePackageMissing, plan.CodePackageMissing, plan.CodeArtifactMissing}},
		// The manifest pins another artifact than the one baked.
		{name: "bake-artifact-repinned", req: bake, disk: baked().bakedArtifact("crictl", "1.34.0", otherDigest, "/opt/bin/crictl-1.34.0"),
			ops: []string{"download /opt/crictl/downloads", "extract /opt/bin/crictl-1.34.0"}},
		{name: "boot-artifact-versioned", req: boot("1.34.9"), disk: baked(),
			ops: []string{"install /opt/bin/kubelet", "install /opt/bin/kubectl", "install /opt/bin/crictl",
				"remove /opt/bin/kubelet-1.35.7", "remove_cache /opt/kubelet/downloads", "remove /opt/bin/kubectl-1.35.7"}},
		{name: "boot-artifact-download", req: boot("1.34.9"), disk: withArtifacts(),
			ops: []string{"download /opt/kubelet/downloads", "extract /opt/bin/kubelet", "extract /opt/bin/kubectl",
				"download /opt/crictl/downloads", "extract /opt/bin/crictl", "remove_cache /opt/kubelet/downloads", "remove_cache /opt/crictl/downloads"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plan.Compute(m, tc.disk.st, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			ops := []string{}
			for _, a := range p.Actions {
				ops = append(ops, string(a.Op)+" "+a.Path)
			}
			if strings.Join(ops, "\n") != strings.Join(tc.ops, "\n") {
				t.Errorf("ops:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(tc.ops, "\n"))
			}
			var codes []string
			for _, it := range p.Report.Of(report.Error) {
				codes = append(codes, it.Code)
			}
			if strings.Join(codes, " ") != strings.Join(tc.errors, " ") {
				t.Errorf("errors %v, want %v", codes, tc.errors)
			}
			var text, js bytes.Buffer
			if err := view.PlanText(&text, p, m.Distros()); err != nil {
				t.Fatal(err)
			}
			if err := view.PlanJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".txt", text.Bytes())
			golden(t, tc.name+".json", js.Bytes())
		})
	}
}
