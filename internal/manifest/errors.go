package manifest

import (
	"fmt"
	"strings"
)

// Error is a manifest that cannot be used: every problem found, not just the
// first. Callers map it to the bad-input exit code.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one bad field.
type Problem struct {
	Path  string // "components[2].packageVersion"
	Entry string // "kubelet ubuntu-24.04 1.34.10-ubuntu24.04u1", when the field is in a component
	Line  int    // 0 when unknown
	Msg   string // what was found and what was expected
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
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
