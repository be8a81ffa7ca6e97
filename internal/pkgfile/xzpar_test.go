package pkgfile

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/nodeimage/reconcile/internal/platform"
)

func xzCompress(t *testing.T, data []byte, args ...string) []byte {
	t.Helper()
	needTool(t, lookTools("xz"))
	cmd := exec.Command("xz", append([]string{"-c", "-T1"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParallelXZ(t *testing.T) {
	data := bytes.Repeat(randomBytes(3, 100_000), 30) // compressible, 3 MB
	multi := xzCompress(t, data, "--block-size=256KiB")
	_, blocks, ok := xzBlocks(bytes.NewReader(multi), int64(len(multi)), DefaultLimits.MaxWindow)
	if !ok || len(blocks) != 12 {
		t.Fatalf("xzBlocks: ok %v, %d blocks, want 12", ok, len(blocks))
	}
	tests := []struct {
		name     string
		in       []byte
		parallel bool // whether the parallel decoder takes it
		wantErr  bool
	}{
		{"multi-block", multi, true, false},
		{"single block", xzCompress(t, data), false, false},
		{"damaged block", flip(multi, len(multi)/2), true, true},
		{"damaged index", flip(multi, len(multi)-20), false, true},
		{"two streams", append(bytes.Clone(multi), multi...), false, false},
		{"stream padding", append(bytes.Clone(multi), 0, 0, 0, 0), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := newParallelXZ(bytes.NewReader(tt.in), int64(len(tt.in)), DefaultLimits, hostScratch)
			if err != nil {
				t.Fatal(err)
			}
			if (r != nil) != tt.parallel {
				t.Fatalf("parallel = %v, want %v", r != nil, tt.parallel)
			}
			if r == nil {
				if r, _, err = decompress(compXZ, newBufReader(bytes.NewReader(tt.in)), DefaultLimits, nil); err != nil {
					if !tt.wantErr {
						t.Fatal(err)
					}
					return
				}
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			want := data
			if tt.name == "two streams" {
				want = append(bytes.Clone(data), data...)
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("err %v, %d bytes, want %d", err, len(got), len(want))
			}
		})
	}
}

// The multi-block fixture really goes through the parallel decoder.
func TestParallelXZFixture(t *testing.T) {
	for _, f := range realFixtures(t) {
		if f.label != "xz-blocks" {
			continue
		}
		p, err := Open(f.path)
		if err != nil {
			t.Fatal(err)
		}
		fh, _ := os.Open(f.path)
		defer fh.Close()
		_, blocks, ok := xzBlocks(io.NewSectionReader(fh, p.deb.dataOff, p.deb.dataSize), p.deb.dataSize, DefaultLimits.MaxWindow)
		if !ok || len(blocks) < 2 {
			t.Fatalf("%s: %d blocks, parallel %v", f, len(blocks), ok)
		}
		if f.format != platform.Deb {
			t.Fatal("xz-blocks fixture is a deb")
		}
		return
	}
	t.Fatal("no xz-blocks fixture")
}
