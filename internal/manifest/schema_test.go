package manifest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/manifests"
)

const schemaFile = "../../schema/components.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("components.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("components.schema.json")
	if err != nil {
		t.Fatalf("compiling %s: %v", schemaFile, err)
	}
	return s
}

// schemaValidates converts YAML to JSON as sigs.k8s.io/yaml does (YAML 1.1:
// an unquoted 1.30 becomes the number 1.3, on becomes true; strict, so a
// duplicate key fails) and validates it against the schema.
func schemaValidates(s *jsonschema.Schema, data []byte) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// TestSchemaAgreesWithParse: for every testdata manifest, the JSON Schema
// and Parse agree on valid or invalid. Files whose mistake JSON Schema
// cannot express say "# schema: valid": the schema must accept them, so
// the disagreement is pinned, not skipped.
func TestSchemaAgreesWithParse(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	type tc struct {
		name string
		data []byte
	}
	cases := []tc{{"embedded components.yaml", manifests.Components}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{filepath.Base(f), data})
	}
	schemaOnly := 0
	for _, c := range cases {
		h := readHeader(t, c.data)
		_, goErr := manifest.Parse(c.name, c.data)
		schemaErr := schemaValidates(s, c.data)
		if h.schemaValid {
			schemaOnly++
			if goErr == nil {
				t.Errorf("%s: marked '# schema: valid' but Parse accepts it too; drop the mark", c.name)
			}
			if schemaErr != nil {
				t.Errorf("%s: marked '# schema: valid' but the schema rejects it: %v", c.name, schemaErr)
			}
			continue
		}
		switch {
		case goErr == nil && schemaErr != nil:
			t.Errorf("%s: Parse accepts it, the schema rejects it: %v", c.name, schemaErr)
		case goErr != nil && schemaErr == nil:
			t.Errorf("%s: the schema accepts it, Parse rejects it: %v", c.name, goErr)
		}
	}
	t.Logf("%d manifests, %d of them with rules only Parse checks", len(cases), schemaOnly)
}

// TestSchemaDocumentsEveryField: editors show descriptions, so every
// property has one, and the schema names the same fields as the Go types.
func TestSchemaDocumentsEveryField(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Description string         `json:"description"`
		Properties  map[string]any `json:"properties"`
		Defs        map[string]struct {
			Description string `json:"description"`
			Properties  map[string]struct {
				Description string `json:"description"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{"# renovate: datasource=", "depName=", "quote"} {
		if !strings.Contains(doc.Description, frag) {
			t.Errorf("top-level description does not mention %q", frag)
		}
	}
	for def, d := range doc.Defs {
		if d.Description == "" {
			t.Errorf("$defs.%s has no description", def)
		}
		for p, prop := range d.Properties {
			if prop.Description == "" {
				t.Errorf("$defs.%s.properties.%s has no description", def, p)
			}
		}
	}
	fields := func(v any) []string {
		var out []string
		for f := range reflectFields(v) {
			out = append(out, f)
		}
		slices.Sort(out)
		return out
	}
	keys := func(m map[string]struct {
		Description string `json:"description"`
	}) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got, want := keys(doc.Defs["component"].Properties), fields(manifest.Component{}); !slices.Equal(got, want) {
		t.Errorf("schema component properties %v, Go fields %v", got, want)
	}
	if got, want := keys(doc.Defs["tool"].Properties), fields(manifest.Tool{}); !slices.Equal(got, want) {
		t.Errorf("schema tool properties %v, Go fields %v", got, want)
	}
}

// TestSchemaDistroIDs keeps the schema's distro ids and their package
// formats in step with package platform.
func TestSchemaDistroIDs(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs struct {
			Component struct {
				Properties struct {
					Distro struct {
						Pattern string `json:"pattern"`
					} `json:"distro"`
				} `json:"properties"`
				AllOf []struct {
					If struct {
						Properties struct {
							Distro struct {
								Pattern string `json:"pattern"`
							} `json:"distro"`
						} `json:"properties"`
					} `json:"if"`
				} `json:"allOf"`
			} `json:"component"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	alternatives := regexp.MustCompile(`^\^\(([a-z|]+)\)-`)
	ids := func(pattern string) []string {
		m := alternatives.FindStringSubmatch(pattern)
		if m == nil {
			t.Fatalf("distro pattern %q is not ^(id|id|...)-", pattern)
		}
		out := strings.Split(m[1], "|")
		slices.Sort(out)
		return out
	}
	if got := ids(doc.Defs.Component.Properties.Distro.Pattern); !slices.Equal(got, platform.KnownIDs()) {
		t.Errorf("schema distro ids %v, platform.KnownIDs() %v", got, platform.KnownIDs())
	}
	var byFormat []string
	for i, a := range doc.Defs.Component.AllOf {
		format := []platform.Format{platform.Deb, platform.RPM}[i]
		for _, id := range ids(a.If.Properties.Distro.Pattern) {
			byFormat = append(byFormat, id)
			if f := (platform.Distro{ID: id}).Format(); f != format {
				t.Errorf("schema treats %s as %s, platform as %s", id, format, f)
			}
		}
	}
	slices.Sort(byFormat)
	if !slices.Equal(byFormat, platform.KnownIDs()) {
		t.Errorf("schema's per-format ids %v, platform.KnownIDs() %v", byFormat, platform.KnownIDs())
	}
}

// TestSchemaRejectsUnquotedNumbers: the conversion that editors and
// sigs.k8s.io/yaml do turns an unquoted 1.30 into a number; the schema must
// call that out as not-a-string.
func TestSchemaRejectsUnquotedNumbers(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	err := schemaValidates(s, []byte("components:\n- {tool: kubelet, distro: ubuntu-24.04, packageVersion: \"1.30.1-1\", k8sVersion: 1.30}\n"))
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) || !strings.Contains(err.Error(), "string") {
		t.Errorf("schema on an unquoted 1.30: %v", err)
	}
}

// reflectFields yields the JSON names of a struct's fields.
func reflectFields(v any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for f := range reflect.TypeOf(v).Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" && !yield(name) {
				return
			}
		}
	}
}
