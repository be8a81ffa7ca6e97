package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nodeimage/reconcile/internal/platform"
)

// schemaBase is the $id prefix of the schemas, which refer to each other.
const schemaBase = "https://github.com/nodeimage/reconcile/schema/"

// schemas compiles the JSON Schemas of every document reconcile prints.
func schemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	kinds := map[string]string{"plan": "plan.schema.json", "applied": "applied.schema.json", "verify": "verify.schema.json", "error": "error.schema.json", "plans": "plans.schema.json"}
	for _, file := range kinds {
		f, err := os.Open(filepath.Join("../../schema", file))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := c.AddResource(schemaBase+file, doc); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for kind, file := range kinds {
		s, err := c.Compile(schemaBase + file)
		if err != nil {
			t.Fatalf("compiling %s: %v", file, err)
		}
		out[kind] = s
	}
	return out
}

// TestOutputsMatchTheirSchemas runs every mode with --output json, on
// success and on failure, and validates each document against the schema
// of its kind in schema/.
func TestOutputsMatchTheirSchemas(t *testing.T) {
	s := schemas(t)
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, `components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1"}
`)
	args := func(extra ...string) []string {
		return append(append([]string{"--output", "json", "--root", root, "--arch", "amd64"}, extra...), manifest)
	}
	seen := map[string]int{}
	validate := func(name string, r result) {
		t.Helper()
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(r.stdout))
		if err != nil {
			t.Fatalf("%s: stdout is not one JSON document: %v\n%s", name, err, r.stdout)
		}
		kind, _ := doc.(map[string]any)["kind"].(string)
		if _, ok := s[kind]; !ok {
			t.Fatalf("%s: kind %q:\n%s", name, kind, r.stdout)
		}
		if fv, _ := doc.(map[string]any)["format_version"].(string); fv == "" {
			t.Errorf("%s: no format_version", name)
		}
		if err := s[kind].Validate(doc); err != nil {
			t.Errorf("%s: the %s document does not match its schema: %v\n%s", name, kind, err, r.stdout)
		}
		seen[kind]++
	}
	// A plan with problems (no packages yet, and --offline), and bake
	// failing on it; a plan of fetches.
	validate("dry-run with problems", run(t, nil, args("--dry-run", "--offline")...).must(t, ExitOK))
	validate("bake without packages", run(t, nil, args("--mode=bake", "--offline")...).must(t, ExitFailure))
	validate("bake dry-run with fetches", run(t, nil, args("--dry-run")...).must(t, ExitOK))
	for _, tool := range []string{"kubelet", "kubectl"} {
		cache(t, root, tool, pkg(t, platform.Deb, tool, "1.35.7-ubuntu24.04u1", platform.AMD64), "")
	}
	validate("bake dry-run", run(t, nil, args("--dry-run")...).must(t, ExitOK))
	validate("bake", run(t, nil, args("--mode=bake")...).must(t, ExitOK))
	validate("verify", run(t, nil, args("--mode=verify", "--exec")...).must(t, ExitOK))
	validate("verify targets before boot", run(t, nil, args("--mode=verify", "--targets", "--k8s-version", "1.35.7")...).must(t, ExitVerify))
	validate("verify targets of an unserved version", run(t, nil, args("--mode=verify", "--k8s-version", "1.36.0")...).must(t, ExitVerify))
	validate("boot dry-run", run(t, nil, args("--dry-run", "--mode=boot", "--k8s-version", "1.35.7")...).must(t, ExitOK))
	validate("boot", run(t, nil, args("--mode=boot", "--k8s-version", "1.35.7")...).must(t, ExitOK))
	validate("boot plans of every served version", run(t, nil, args("--dry-run", "--mode=boot", "--k8s-version", "all")...).must(t, ExitOK))
	validate("boot dry-run of an unlisted version", run(t, nil, args("--dry-run", "--mode=boot", "--k8s-version", "1.36.0")...).must(t, ExitOK))
	validate("boot of an unlisted version, offline", run(t, nil, args("--mode=boot", "--offline", "--k8s-version", "1.36.0")...).must(t, 121))
	validate("boot of an unserved version", run(t, nil, args("--mode=boot", "--require-manifest-version", "--k8s-version", "1.36.0")...).must(t, 121))
	validate("a manifest that is not there", run(t, nil, "--output", "json", "--mode=bake", "--root", root, filepath.Join(root, "nope.yaml")).must(t, ExitBadInput))
	for _, kind := range []string{"plan", "applied", "verify", "error", "plans"} {
		if seen[kind] == 0 {
			t.Errorf("no %s document was validated", kind)
		}
	}
}
