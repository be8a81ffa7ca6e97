// Package report is the one form in which every stage says what it found:
// the manifest's problems, the plan's notes, warnings and problems, verify's
// findings. Each item carries a kind, a stable reason code for machines, the
// path of the field or entry it is about and, for manifests, the line.
package report

import (
	"fmt"
	"strings"
)

// Kind is how much an item matters.
type Kind string

const (
	// Error stops the stage: a bad manifest, a plan that cannot be applied.
	Error Kind = "error"
	// Warning needs a person's attention but does not stop anything.
	Warning Kind = "warning"
	// Info says what was looked at and passed over.
	Info Kind = "info"
)

// Item is one finding.
type Item struct {
	Kind Kind `json:"kind"`
	// Code is a stable snake_case reason ("manifest_version_missing",
	// "record_mismatch"): what scripts match on, never the message.
	Code string `json:"code"`
	// Path is the field ("components[2].packageVersion") or the subject
	// ("/opt/bin/kubelet-1.34.10") the item is about; "" for the whole.
	Path string `json:"path,omitempty"`
	// Line is the manifest line, 0 where none applies.
	Line int `json:"line,omitempty"`
	// Tool and Entry name the manifest entry served, where there is one
	// (Entry is the index in components, -1 for none).
	Tool  string `json:"tool,omitempty"`
	Entry *int   `json:"entry,omitempty"`
	// ExitCode is the code a failing run exits with for this item (an
	// Error at boot: the tool's own code).
	ExitCode int    `json:"exit_code,omitempty"`
	Message  string `json:"message"`
}

// String is the item for people: "line 4: components[0].packageVersion: …".
func (it Item) String() string {
	var b strings.Builder
	if it.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", it.Line)
	}
	b.WriteString(it.Message)
	return b.String()
}

// Report is an ordered list of items.
type Report []Item

// Add appends an item.
func (r *Report) Add(it Item) { *r = append(*r, it) }

// Of returns the items of kind k, in order.
func (r Report) Of(k Kind) Report {
	var out Report
	for _, it := range r {
		if it.Kind == k {
			out = append(out, it)
		}
	}
	return out
}

// HasErrors reports whether any item is an Error.
func (r Report) HasErrors() bool {
	for _, it := range r {
		if it.Kind == Error {
			return true
		}
	}
	return false
}

// EntryIndex is a helper for Item.Entry: a pointer to i.
func EntryIndex(i int) *int { return &i }
