package view

import (
	"fmt"
	"io"
	"strings"

	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/report"
)

// label is how text output prefixes an item of each kind.
var label = map[report.Kind]string{report.Info: "note", report.Warning: "warning", report.Error: "problem"}

func writeItems(b *strings.Builder, r report.Report, kinds ...report.Kind) {
	for _, k := range kinds {
		for _, it := range r.Of(k) {
			fmt.Fprintf(b, "%s: %s\n", label[k], it)
		}
	}
}

// PlanText renders the plan for people, like a terraform plan.
// manifestDistros name what the manifest lists, for a plan that is not
// applicable.
func PlanText(w io.Writer, p *plan.Plan, manifestDistros []string) error {
	var b strings.Builder
	target := fmt.Sprintf("%s %s", p.Distro, p.Arch)
	if p.K8sVersion != "" {
		target += " for Kubernetes " + p.K8sVersion
	}
	if !p.Applicable {
		fmt.Fprintf(&b, "The manifest has no entries for %s %s (it lists %s): nothing to do.\n", p.Distro, p.Arch, strings.Join(manifestDistros, ", "))
	}
	if len(p.Actions) == 0 && p.Applicable && !p.Report.HasErrors() {
		fmt.Fprintf(&b, "No changes: %s on %s matches the manifest.\n", p.Mode, target)
	}
	if len(p.Actions) > 0 {
		fmt.Fprintf(&b, "%s plan for %s:\n", p.Mode, target)
		b.Grow(len(p.Actions) * 128) // a line is about that long: no regrowth
		for _, a := range p.Actions {
			b.WriteString("  ")
			b.WriteString(a.String())
			b.WriteByte('\n')
		}
	}
	writeItems(&b, p.Report, report.Info, report.Warning, report.Error)
	if len(p.Actions) > 0 {
		fmt.Fprintf(&b, "Plan: %s.\n", plan.Summary(p.Actions))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// AppliedText renders what bake or boot did.
func AppliedText(w io.Writer, p *plan.Plan, results []plan.Result, runErr error) error {
	if len(p.Actions) == 0 {
		return PlanText(w, p, nil)
	}
	var b strings.Builder
	writeItems(&b, p.Report, report.Info, report.Warning)
	for _, r := range results {
		fmt.Fprintf(&b, "%s\n", resultLine(r))
	}
	if runErr == nil {
		fmt.Fprintf(&b, "%s done: %s.\n", p.Mode, plan.Summary(p.Actions))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func resultLine(r plan.Result) string {
	var b strings.Builder
	if r.Err != nil {
		fmt.Fprintf(&b, "FAILED %s: %s", r.Action, Message(r.Err))
	} else {
		fmt.Fprintf(&b, "%s (%s)", r.Action, r.Duration.Round(1e6))
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "\n    warning: %s", w.Message)
	}
	return b.String()
}
