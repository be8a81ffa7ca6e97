package rootfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
)

func openRoot(t *testing.T) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	return rootfstest.Open(t, dir), dir
}

func write(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

// entries lists a directory's names, to see that no temp file stays.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteAtomic(t *testing.T) {
	root, dir := openRoot(t)
	res, err := WriteAtomic(root, "opt/bin/kubelet", 0o755, write("new binary"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("new binary"))
	if res.Size != 10 || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("result %+v", res)
	}
	fi, err := os.Stat(filepath.Join(dir, "opt/bin/kubelet"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	if got := entries(t, filepath.Join(dir, "opt/bin")); len(got) != 1 {
		t.Errorf("opt/bin holds %v", got)
	}
}

// A failed write or a refused check leaves the previous file and no temp.
func TestWriteAtomicFailureKeepsPrevious(t *testing.T) {
	boom := errors.New("boom")
	for name, attempt := range map[string]func(*os.Root) error{
		"fill fails": func(r *os.Root) error {
			_, err := WriteAtomic(r, "opt/bin/kubelet", 0o755, func(w io.Writer) error {
				io.WriteString(w, "half")
				return boom
			})
			return err
		},
		"check refuses": func(r *os.Root) error {
			_, err := WriteChecked(r, "opt/bin/kubelet", 0o755, write("tampered"), func(res Result) error {
				if res.Size != 8 {
					t.Errorf("check saw size %d", res.Size)
				}
				return boom
			})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			root, dir := openRoot(t)
			if _, err := WriteAtomic(root, "opt/bin/kubelet", 0o755, write("previous")); err != nil {
				t.Fatal(err)
			}
			if err := attempt(root); !errors.Is(err, boom) {
				t.Fatalf("err %v, want boom", err)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "opt/bin/kubelet"))
			if string(got) != "previous" {
				t.Errorf("target holds %q", got)
			}
			if names := entries(t, filepath.Join(dir, "opt/bin")); len(names) != 1 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

func TestRel(t *testing.T) {
	for in, want := range map[string]string{"/opt/bin": "opt/bin", "/": ".", "opt/../../etc": "etc", "/var/lib/reconcile/": "var/lib/reconcile"} {
		if got := Rel(in); got != want {
			t.Errorf("Rel(%q) = %q, want %q", in, got, want)
		}
	}
}

// The file and the hash fed apart through Parts, on two goroutines, past
// several writeback points, give the same file and digest as Write.
func TestWriterParts(t *testing.T) {
	root, dir := openRoot(t)
	data := make([]byte, 3*writebackEvery+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	res, err := WriteAtomic(root, "opt/bin/kubelet", 0o755, func(w io.Writer) error {
		file, hash := w.(*Writer).Parts()
		done := make(chan error, 1)
		go func() {
			_, err := hash.Write(data)
			done <- err
		}()
		for b := data; len(b) > 0; b = b[min(len(b), 1<<20):] {
			if _, err := file.Write(b[:min(len(b), 1<<20)]); err != nil {
				return err
			}
		}
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if res.Size != int64(len(data)) || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("result %+v", res)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "opt/bin/kubelet")); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}

func TestCreateTemp(t *testing.T) {
	root, dir := openRoot(t)
	f, name, err := CreateTemp(root, "var/cache/x.deb")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !strings.HasPrefix(name, "var/cache/"+TempPrefix+"x.deb-") {
		t.Errorf("name %q", name)
	}
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	if _, err := f.WriteAt([]byte("rw"), 0); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := f.ReadAt(b[:], 0); err != nil || string(b[:]) != "rw" {
		t.Fatalf("read back %q: %v", b, err)
	}
}
