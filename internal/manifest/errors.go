package manifest

import (
	"fmt"
	"strings"

	"github.com/nodeimage/reconcile/internal/report"
)

// Error is a manifest that cannot be used: every problem found, not just the
// first. Callers map it to the bad-input exit code.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one bad field.
type Problem struct {
	Code  string // stable reason, one of the Code* constants
	Path  string // "components[2].packageVersion"
	Entry string // "kubelet ubuntu-24.04 1.34.10-ubuntu24.04u1", when the field is in a component
	Tool  string // the component's tool as written, when the field is in a component
	Line  int    // 0 when unknown
	Msg   string // what was found and what was expected
}

// Reason codes of manifest problems: what scripts match on.
const (
	CodeRead         = "manifest_unreadable"
	CodeTooLarge     = "manifest_too_large"
	CodeSyntax       = "manifest_syntax"
	CodeYAML         = "manifest_yaml_feature"    // anchors, aliases, merge and complex keys
	CodeYAML11       = "manifest_ambiguous_value" // read differently by YAML 1.1 and 1.2
	CodeType         = "manifest_wrong_type"
	CodeUnknownField = "manifest_unknown_field"
	CodeDuplicateKey = "manifest_duplicate_key"
	CodeMissing      = "manifest_missing_field"
	CodeInvalid      = "manifest_invalid_value"
	CodeDuplicate    = "manifest_duplicate_entry" // two entries bake one versioned binary
	CodeOverlap      = "manifest_overlapping_entries"
	CodeToolSets     = "manifest_kubelet_kubectl_mismatch"
	CodeUnused       = "manifest_unused_key"
	CodePathClash    = "manifest_path_clash"
	CodeDigest       = "manifest_digest" // missing or disagreeing pinned digest
)

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.text())
	}
	return p.text()
}

// text is the problem without its line.
func (p Problem) text() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
		if p.Entry != "" {
			fmt.Fprintf(&b, " (%s)", p.Entry)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Item is the problem as a report item; its String is the problem's.
func (p Problem) Item() report.Item {
	it := report.Item{Kind: report.Error, Code: p.Code, Path: p.Path, Line: p.Line, Tool: p.Tool, Message: p.text()}
	if i := componentIndex(p.Path); i >= 0 {
		it.Entry = report.EntryIndex(i)
	}
	return it
}

// Report is every problem as report items, in the order of Problems.
func (e *Error) Report() report.Report {
	r := make(report.Report, 0, len(e.Problems))
	for _, p := range e.Problems {
		r.Add(p.Item())
	}
	return r
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("manifest %s: %s", e.File, e.Problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "manifest %s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}
