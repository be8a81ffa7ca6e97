package pkgbuild

import (
	"os"
	"os/exec"
	"testing"

	"github.com/nodeimage/reconcile/internal/platform"
)

// Require stops a test that needs tools which are not on PATH: it fails under
// CI=true (CI must install them, so a skip there would hide a missing install
// step) and skips with a message elsewhere.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed: .ci/run must install it", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// RequireFormat is Require for the tools that build packages of format f.
func RequireFormat(t testing.TB, f platform.Format) {
	t.Helper()
	Require(t, Tools(f)...)
}
