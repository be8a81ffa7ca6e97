package view

import (
	"fmt"
	"io"

	"github.com/nodeimage/reconcile/internal/plan"
)

// KindPlans is the document of a dry-run boot for every served version.
const KindPlans = "plans"

// PlansDoc is the document of --dry-run --mode=boot --k8s-version all.
type PlansDoc struct {
	FormatVersion string `json:"format_version"`
	Kind          string `json:"kind"`
	Plans         []Plan `json:"plans"`
}

// PlansJSON writes the plans document.
func PlansJSON(w io.Writer, plans []*plan.Plan) error {
	doc := PlansDoc{FormatVersion: FormatVersion, Kind: KindPlans, Plans: make([]Plan, len(plans))}
	for i, p := range plans {
		doc.Plans[i] = planBody(p)
	}
	return writeJSON(w, doc)
}

// PlansText writes each plan as PlanText does, then one line that counts
// the plans with problems.
func PlansText(w io.Writer, plans []*plan.Plan, target string, manifestDistros []string) error {
	if len(plans) == 0 {
		_, err := fmt.Fprintf(w, "No entry for %s names a cluster version: no boot to plan.\n", target)
		return err
	}
	bad := 0
	for _, p := range plans {
		if err := PlanText(w, p, manifestDistros); err != nil {
			return err
		}
		if p.Err() != nil {
			bad++
		}
	}
	_, err := fmt.Fprintf(w, "%d boot plans for %s (Kubernetes %s to %s): %d with problems.\n",
		len(plans), target, plans[0].K8sVersion, plans[len(plans)-1].K8sVersion, bad)
	return err
}
