package cli

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/manifest"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/view"
)

// allServed is the --k8s-version value that plans a boot for every cluster
// version the manifest's entries name for the distro and arch: the
// pull-request check of a manifest, which must fail when any tool has no
// entry for one of them (a boot there would exit with the tool's code).
const allServed = "all"

// served lists the cluster versions that entries name exactly, oldest
// first. Minor lines and constraints name no version of their own: they
// serve the versions the exact entries name.
func served(entries []manifest.Entry) []*semver.Version {
	var out []*semver.Version
	for _, e := range entries {
		if !e.Exact() {
			continue
		}
		v, err := manifest.ParseK8sVersion(e.K8s)
		if err != nil || slices.ContainsFunc(out, v.Equal) {
			continue
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *semver.Version) int { return a.Compare(b) })
	return out
}

// planServed prints one boot plan per served cluster version and exits as
// a dry-run of each would: with --detailed-exitcode, the code of the first
// plan with a problem, else 5 when any plan has changes.
func (c *command) planServed(ctx context.Context, root *os.Root, m *manifest.Manifest, req plan.Request) (int, error) {
	var plans []*plan.Plan
	code := ExitOK
	for _, v := range served(m.Entries(req.Distro, req.Arch)) {
		req.K8sVersion = v
		p, err := c.plan(ctx, root, m, req)
		if err != nil {
			return ExitBadInput, err
		}
		plans = append(plans, p)
		if !c.o.detailedExitcode {
			continue
		}
		if err := p.Err(); err != nil && (code == ExitOK || code == ExitChanges) {
			code = planExit(req.Mode, err, ExitFailure)
		} else if len(p.Actions) > 0 && code == ExitOK {
			code = ExitChanges
		}
	}
	if c.o.output == "json" {
		return code, view.PlansJSON(c.stdout, plans)
	}
	return code, view.PlansText(c.stdout, plans, fmt.Sprintf("%s %s", req.Distro, req.Arch), m.Distros())
}
