// Package view renders what every mode has to say — the plan, the applied
// results, verify's checks, a run's error — as text for people, as JSON
// documents for machines and as provisioning events. The JSON has its own
// types, stable whatever the internal structs become, each document with a
// format_version and a kind, and a JSON Schema per document in schema/.
package view

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"strings"
	"syscall"

	"github.com/nodeimage/reconcile/internal/plan"
	"github.com/nodeimage/reconcile/internal/report"
)

// FormatVersion is the version of every JSON document reconcile prints.
// Version 2: one report list of items with reason codes replaces notes,
// warnings and problems; every document has format_version and kind.
const FormatVersion = "2"

// Kinds of document.
const (
	KindPlan    = "plan"
	KindApplied = "applied"
	KindVerify  = "verify"
	KindError   = "error"
)

// Item is a report item.
type Item struct {
	Kind     string `json:"kind"`
	Code     string `json:"code"`
	Path     string `json:"path,omitempty"`
	Line     int    `json:"line,omitempty"`
	Tool     string `json:"tool,omitempty"`
	Entry    *int   `json:"entry,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Message  string `json:"message"`
}

func items(r report.Report) []Item {
	out := make([]Item, len(r))
	for i, it := range r {
		out[i] = Item{Kind: string(it.Kind), Code: it.Code, Path: it.Path, Line: it.Line, Tool: it.Tool, Entry: it.Entry, ExitCode: it.ExitCode, Message: it.Message}
	}
	return out
}

// Action is a plan's action.
type Action struct {
	Op             string   `json:"op"`
	Tool           string   `json:"tool,omitempty"`
	Entry          int      `json:"entry"`
	Package        string   `json:"package,omitempty"`
	PackageVersion string   `json:"package_version,omitempty"`
	Arch           string   `json:"arch,omitempty"`
	PackageFile    string   `json:"package_file,omitempty"`
	Candidates     []string `json:"candidates,omitempty"`
	From           string   `json:"from,omitempty"`
	Path           string   `json:"path"`
	CacheDir       string   `json:"cache_dir,omitempty"`
	Manager        string   `json:"manager,omitempty"`
	NewestOf       string   `json:"newest_revision_of,omitempty"`
	Versioned      bool     `json:"versioned,omitempty"`
	Depends        []string `json:"depends,omitempty"`
	Source         string   `json:"source,omitempty"`
	Ref            string   `json:"ref,omitempty"`
	Digest         string   `json:"digest,omitempty"`
	ArtifactFile   string   `json:"artifact_file,omitempty"`
	ExitCode       int      `json:"exit_code"`
	Reason         string   `json:"reason,omitempty"`
}

func action(a plan.Action) Action {
	return Action{Op: string(a.Op), Tool: a.Tool, Entry: a.Entry, Package: a.Package, PackageVersion: a.PackageVersion(), Arch: string(a.Arch),
		PackageFile: a.PackageFile, Candidates: a.Candidates, From: a.From, Path: a.Path, CacheDir: a.CacheDir, Manager: a.Manager,
		NewestOf: a.NewestOf, Versioned: a.Versioned, Depends: a.Depends, Source: string(a.Source), Ref: a.Ref, Digest: a.Digest, ArtifactFile: a.ArtifactFile,
		ExitCode: a.ExitCode, Reason: a.Reason}
}

// Plan is the body of a plan.
type Plan struct {
	Mode       string   `json:"mode"`
	Distro     string   `json:"distro"`
	Arch       string   `json:"arch"`
	K8sVersion string   `json:"k8s_version,omitempty"`
	Applicable bool     `json:"applicable"`
	Actions    []Action `json:"actions"`
	Report     []Item   `json:"report"`
}

func planBody(p *plan.Plan) Plan {
	v := Plan{Mode: string(p.Mode), Distro: p.Distro, Arch: p.Arch, K8sVersion: p.K8sVersion, Applicable: p.Applicable,
		Actions: make([]Action, len(p.Actions)), Report: items(p.Report)}
	for i, a := range p.Actions {
		v.Actions[i] = action(a)
	}
	return v
}

// PlanDoc is the document of --dry-run --output json.
type PlanDoc struct {
	FormatVersion string `json:"format_version"`
	Kind          string `json:"kind"`
	Plan
}

// Result is what one action did.
type Result struct {
	Action     Action  `json:"action"`
	Start      string  `json:"start"` // RFC 3339, UTC
	DurationMS float64 `json:"duration_ms"`
	Size       int64   `json:"size,omitempty"`
	SHA256     string  `json:"sha256,omitempty"`
	Reported   string  `json:"reported_version,omitempty"`
	Warnings   []Item  `json:"warnings,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// AppliedDoc is the document of bake and boot with --output json.
type AppliedDoc struct {
	FormatVersion string   `json:"format_version"`
	Kind          string   `json:"kind"`
	Plan          Plan     `json:"plan"`
	Results       []Result `json:"results"`
	Error         *Error   `json:"error,omitempty"`
}

// Error is what stopped a run.
type Error struct {
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

// ErrorDoc is the document of a run that failed before it had a plan or
// checks to print.
type ErrorDoc struct {
	FormatVersion string `json:"format_version"`
	Kind          string `json:"kind"`
	Error
}

func writeJSON(w io.Writer, doc any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// PlanJSON writes the plan document.
func PlanJSON(w io.Writer, p *plan.Plan) error {
	return writeJSON(w, PlanDoc{FormatVersion: FormatVersion, Kind: KindPlan, Plan: planBody(p)})
}

// AppliedJSON writes the applied document: the plan, what each action did
// and, when the run failed, why and with which exit code.
func AppliedJSON(w io.Writer, p *plan.Plan, results []plan.Result, runErr error, code int) error {
	doc := AppliedDoc{FormatVersion: FormatVersion, Kind: KindApplied, Plan: planBody(p), Results: make([]Result, len(results))}
	for i, r := range results {
		doc.Results[i] = Result{Action: action(r.Action), Start: r.Start.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			DurationMS: float64(r.Duration.Microseconds()) / 1000, Size: r.Size, SHA256: r.SHA256, Reported: r.Reported, Warnings: items(r.Warnings)}
		if r.Err != nil {
			doc.Results[i].Error = Message(r.Err)
		}
	}
	if runErr != nil {
		doc.Error = &Error{Message: Message(runErr), ExitCode: code}
	}
	return writeJSON(w, doc)
}

// ErrorJSON writes the error document.
func ErrorJSON(w io.Writer, err error, code int) error {
	return writeJSON(w, ErrorDoc{FormatVersion: FormatVersion, Kind: KindError, Error: Error{Message: Message(err), ExitCode: code}})
}

// Message is err for people, without the syscall names of *fs.PathError
// ("statat opt/bin/kubelet: no such file or directory" becomes
// "/opt/bin/kubelet: no such file or directory").
func Message(err error) string {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	p := pe.Path
	if p != "" && p[0] != '/' {
		p = "/" + p
	}
	cause := pe.Err.Error()
	var errno syscall.Errno
	if errors.As(pe.Err, &errno) {
		cause = errno.Error()
	}
	return strings.Replace(err.Error(), pe.Error(), p+": "+cause, 1)
}
