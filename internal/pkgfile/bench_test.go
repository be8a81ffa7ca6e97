package pkgfile

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkExtract extracts usr/bin/kubelet to io.Discard from the small
// test fixtures, or from the packages in $PKGFILE_BENCH_DIR (*.deb, *.rpm;
// bench/pkgfile.sh builds 100 MB ones there).
// With -cpu 1 a multi-block xz stream is decoded sequentially.
func BenchmarkExtract(b *testing.B) {
	type pkg struct{ name, path string }
	var pkgs []pkg
	if dir := os.Getenv("PKGFILE_BENCH_DIR"); dir != "" {
		for _, ext := range []string{"*.deb", "*.rpm"} {
			m, _ := filepath.Glob(filepath.Join(dir, ext))
			for _, p := range m {
				pkgs = append(pkgs, pkg{filepath.Base(p), p})
			}
		}
	} else {
		for _, f := range realFixtures(b) {
			pkgs = append(pkgs, pkg{f.String(), f.path})
		}
	}
	for _, pk := range pkgs {
		b.Run(pk.name, func(b *testing.B) {
			p, err := Open(pk.path)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				e, err := p.Extract([]string{"usr/bin/kubelet"}, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(e.Size)
			}
		})
	}
}
