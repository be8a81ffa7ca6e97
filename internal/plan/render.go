package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText renders the plan for people, like a terraform plan.
func (p *Plan) WriteText(w io.Writer, manifestDistros []string) error {
	var b strings.Builder
	target := fmt.Sprintf("%s %s", p.Distro, p.Arch)
	if p.K8sVersion != "" {
		target += " for Kubernetes " + p.K8sVersion
	}
	if !p.Applicable {
		fmt.Fprintf(&b, "The manifest has no entries for %s %s (it lists %s): nothing to do.\n", p.Distro, p.Arch, strings.Join(manifestDistros, ", "))
	}
	if len(p.Actions) == 0 && p.Applicable && len(p.Problems) == 0 {
		fmt.Fprintf(&b, "No changes: %s on %s matches the manifest.\n", p.Mode, target)
	}
	if len(p.Actions) > 0 {
		fmt.Fprintf(&b, "%s plan for %s:\n", p.Mode, target)
		for _, a := range p.Actions {
			fmt.Fprintf(&b, "  %s\n", a)
		}
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, pr := range p.Problems {
		fmt.Fprintf(&b, "problem: %s\n", pr.Message)
	}
	if len(p.Actions) > 0 {
		fmt.Fprintf(&b, "Plan: %s.\n", Summary(p.Actions))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary counts actions by op: "2 to extract, 1 to remove".
func Summary(actions []Action) string {
	counts := map[Op]int{}
	for _, a := range actions {
		counts[a.Op]++
	}
	var parts []string
	for _, op := range []Op{Extract, Install, Fetch, Remove, RemoveCache} {
		if counts[op] > 0 {
			parts = append(parts, fmt.Sprintf("%d to %s", counts[op], strings.ReplaceAll(string(op), "_", " ")))
		}
	}
	return strings.Join(parts, ", ")
}

// WriteJSON renders the plan as one JSON document.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
