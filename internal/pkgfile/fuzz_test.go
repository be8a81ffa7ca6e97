package pkgfile

import (
	"fmt"
	"runtime"
	"time"
	"errors"
	"os"
	"path/filepath"
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
	tm := time.AfterFunc(3*time.Second, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		os.WriteFile(fmt.Sprintf("/tmp/fuzzslow-%d.txt", os.Getpid()), append(buf[:n], b...), 0o644)
	})
	defer tm.Stop()
	path := filepath.Join(t.TempDir(), "p")
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
