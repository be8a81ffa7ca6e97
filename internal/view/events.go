package view

import (
	"fmt"
	"time"

	"github.com/nodeimage/reconcile/internal/events"
	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/report"
)

// Events are the provisioning events of a run: one per action applied, then
// one for the run, which carries the plan's warnings (a corrupt record, a
// dependency the node lacks) so that provisioning sees them.
func Events(p *plan.Plan, results []plan.Result, start, end time.Time, runErr error) []Event {
	var out []Event
	for _, r := range results {
		msg := r.Action.String()
		if r.Err != nil {
			msg = Message(r.Err)
		}
		for _, w := range r.Warnings {
			msg += "; warning: " + w.Message
		}
		out = append(out, Event{events.New(r.Action.Task(p.Mode), r.Start, r.Start.Add(r.Duration), r.Err != nil, msg), r.Start})
	}
	msg := fmt.Sprintf("%s %s %s: %s", p.Mode, p.Distro, p.Arch, plan.Summary(p.Actions))
	if len(p.Actions) == 0 {
		msg = fmt.Sprintf("%s %s %s: no changes", p.Mode, p.Distro, p.Arch)
	}
	if runErr != nil {
		msg = Message(runErr)
	}
	for _, w := range p.Report.Of(report.Warning) {
		msg += "; warning: " + w.Message
	}
	return append(out, Event{events.New("reconcile."+string(p.Mode), start, end, runErr != nil, msg), start})
}

// Event is a provisioning event and the start it is filed under.
type Event struct {
	events.Event
	Start time.Time
}
