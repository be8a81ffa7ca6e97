// Package rootfstest opens temporary roots for tests of the packages that
// work through an *os.Root.
package rootfstest

import (
	"os"
	"testing"
)

// Open opens dir as a root, failing t if it cannot, and closes it when
// the test ends.
func Open(t testing.TB, dir string) *os.Root {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root
}
