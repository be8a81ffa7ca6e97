package view

import (
	"fmt"
	"io"
	"strings"

	"github.com/nodeimage/reconcile/internal/verify"
)

// What verify checked.
const (
	CheckedVersioned = "versioned" // the versioned binaries, as bake left them
	CheckedTargets   = "targets"   // the boot targets for a cluster version
)

// Check is one binary verify checked.
type Check struct {
	Tool           string `json:"tool"`
	Entry          int    `json:"entry"`
	PackageVersion string `json:"package_version,omitempty"`
	Path           string `json:"path,omitempty"`
	OK             bool   `json:"ok"`
	Findings       []Item `json:"findings"`
	Reported       string `json:"reported_version,omitempty"`
}

// VerifyDoc is the document of --mode=verify --output json.
type VerifyDoc struct {
	FormatVersion string  `json:"format_version"`
	Kind          string  `json:"kind"`
	Checked       string  `json:"checked"`
	K8sVersion    string  `json:"k8s_version,omitempty"`
	Checks        []Check `json:"checks"`
	Failed        int     `json:"failed"`
}

// Verify is what verify checked and found: checked is CheckedVersioned or
// CheckedTargets (then for k8sVersion).
type Verify struct {
	Checked    string
	K8sVersion string
	Checks     []verify.Check
}

// Failed counts the checks that failed.
func (v Verify) Failed() int {
	n := 0
	for _, c := range v.Checks {
		if !c.OK() {
			n++
		}
	}
	return n
}

func (v Verify) what() string {
	if v.Checked == CheckedTargets {
		return "the boot targets for Kubernetes " + v.K8sVersion
	}
	return "the versioned binaries (the baked image; --targets checks the boot targets)"
}

// VerifyJSON writes the verify document.
func VerifyJSON(w io.Writer, v Verify) error {
	doc := VerifyDoc{FormatVersion: FormatVersion, Kind: KindVerify, Checked: v.Checked, K8sVersion: v.K8sVersion, Checks: make([]Check, len(v.Checks)), Failed: v.Failed()}
	for i, c := range v.Checks {
		doc.Checks[i] = Check{Tool: c.Tool, Entry: c.Entry, PackageVersion: c.PackageVersion, Path: c.Path, OK: c.OK(), Findings: items(c.Findings), Reported: c.Reported}
	}
	return writeJSON(w, doc)
}

// VerifyText writes one line per check, between a line that says what was
// checked and, when all passed, a last line that says so.
func VerifyText(w io.Writer, v Verify) error {
	var b strings.Builder
	fmt.Fprintf(&b, "verify: checking %s\n", v.what())
	for _, c := range v.Checks {
		subject := c.Tool
		if c.Path != "" {
			subject = fmt.Sprintf("%s (%s %s)", c.Path, c.Tool, c.PackageVersion)
		}
		if c.OK() {
			fmt.Fprintf(&b, "ok   %s", subject)
			if c.Reported != "" {
				fmt.Fprintf(&b, ": reports %q", c.Reported)
			}
			b.WriteString("\n")
			continue
		}
		msgs := make([]string, len(c.Findings))
		for i, f := range c.Findings {
			msgs[i] = f.Message
		}
		fmt.Fprintf(&b, "FAIL %s: %s\n", subject, strings.Join(msgs, "; "))
	}
	if v.Failed() == 0 {
		fmt.Fprintf(&b, "verify: all %d binaries match the manifest.\n", len(v.Checks))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
