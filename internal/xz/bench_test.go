package xz

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// BenchmarkDecode decodes the middle 2 MiB of the test binary, compressed
// by xz -6, or the .xz file $XZ_BENCH_FILE, to io.Discard with one reused
// Reader. Compare with `xz -dc -T1` on the same file.
func BenchmarkDecode(b *testing.B) {
	var in []byte
	if f := os.Getenv("XZ_BENCH_FILE"); f != "" {
		var err error
		if in, err = os.ReadFile(f); err != nil {
			b.Fatal(err)
		}
	} else {
		in = xzTool(b, sampleBytes(b, 2<<20), "-6")
	}
	z, err := NewReader(bytes.NewReader(in), 0)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	for b.Loop() {
		if err := z.Reset(bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, z, buf)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}
