package pkgfile

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/platform"
)

// fuzzLimits keep one input's work small: a few bytes of zstd can expand
// to gigabytes, which is bounded, not a hang, but slow.
var fuzzLimits = Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 1 << 20, MaxUnpackedSize: 16 << 20}

func fuzzSeeds(f *testing.F, format platform.Format) {
	for _, fx := range realFixtures(f) {
		if fx.format == format && fx.arch == platform.AMD64 {
			b, err := os.ReadFile(fx.path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, comp := range []string{"gzip", "xz", "zstd", "none"} {
		var b []byte
		var err error
		if format == platform.Deb {
			d := goodDeb
			d.Compression = comp
			b, err = d.Bytes()
		} else {
			b, err = rpmWith(func(r *pkgtest.RPM) { r.Compression = comp }).Bytes()
		}
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func fuzzOpenExtract(t *testing.T, b []byte) {
	path := fuzzPath(t)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLimits(path, fuzzLimits)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) || pe.Path != path {
			t.Fatalf("Open: %v is not an *Error naming the package", err)
		}
		return
	}
	var w countWriter
	e, err := p.Extract([]string{"usr/bin/kubelet", "usr/local/bin/helper"}, &w)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) || pe.Path != path {
			t.Fatalf("Extract: %v is not an *Error naming the package", err)
		}
		return
	}
	if w.n != e.Size || e.Size > fuzzLimits.MaxFileSize {
		t.Fatalf("wrote %d bytes for an entry of %d", w.n, e.Size)
	}
}

var (
	fuzzDirOnce sync.Once
	fuzzDir     string
)

// fuzzPath is one file per worker process, rewritten by every run: a
// TempDir per input costs more than the input.
func fuzzPath(t *testing.T) string {
	fuzzDirOnce.Do(func() { fuzzDir, _ = os.MkdirTemp(fixtureDir, "fuzz-") })
	if fuzzDir == "" {
		t.Fatal("no fuzz temp dir")
	}
	return filepath.Join(fuzzDir, "p")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func FuzzOpenDeb(f *testing.F) {
	fuzzSeeds(f, platform.Deb)
	f.Fuzz(fuzzOpenExtract)
}

func FuzzOpenRPM(f *testing.F) {
	fuzzSeeds(f, platform.RPM)
	f.Fuzz(fuzzOpenExtract)
}
