package view_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/report"
	"github.com/nodeimage/reconcile/internal/verify"
	"github.com/nodeimage/reconcile/internal/view"
)

// TestMessageHasNoSyscallNames: the errors of os.Root name the syscall
// ("statat", "openat"); people get the path and the cause.
func TestMessageHasNoSyscallNames(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, err = root.Lstat("opt/bin/kubelet")
	if err == nil || !strings.Contains(err.Error(), "statat") {
		t.Fatalf("expected a statat error, got %v", err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{err, "/opt/bin/kubelet: no such file or directory"},
		{fmt.Errorf("observing /: %w", err), "observing /: /opt/bin/kubelet: no such file or directory"},
		{fmt.Errorf("plain"), "plain"},
	} {
		if got := view.Message(tc.err); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestVerifyLineWithoutEntry: a tool no entry serves is named, with no
// blank fields.
func TestVerifyLineWithoutEntry(t *testing.T) {
	c := verify.Check{Tool: "kubelet", Entry: -1}
	c.Findings.Add(report.Item{Kind: report.Error, Code: verify.CodeVersionMissing, Message: "no kubelet entry serves Kubernetes 1.37.1"})
	var b strings.Builder
	if err := view.VerifyText(&b, view.Verify{Checked: view.CheckedTargets, K8sVersion: "1.37.1", Checks: []verify.Check{c}}); err != nil {
		t.Fatal(err)
	}
	want := "verify: checking the boot targets for Kubernetes 1.37.1\nFAIL kubelet: no kubelet entry serves Kubernetes 1.37.1\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
