package pkgfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
)

// cacheRoot is a root holding the real gzip deb fixture at
// var/cache/k.deb, and its directory.
func cacheRoot(t *testing.T) (*os.Root, string, fixture) {
	t.Helper()
	f := fixtureFor(t, platform.Deb, "gzip", platform.AMD64)
	dir := t.TempDir()
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "var/cache"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "var/cache/k.deb"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return rootfstest.Open(t, dir), dir, f
}

func TestOpenIn(t *testing.T) {
	root, _, f := cacheRoot(t)
	p, err := OpenIn(root, "var/cache/k.deb", DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if p.Path != "/var/cache/k.deb" || p.Name != "kubelet" {
		t.Fatalf("Path %q, Name %q", p.Path, p.Name)
	}
	var buf bytes.Buffer
	if _, err := p.Extract([]string{"usr/bin/kubelet"}, &buf); err != nil || !bytes.Equal(buf.Bytes(), f.kubelet) {
		t.Fatalf("Extract: %v, %d bytes", err, buf.Len())
	}
}

// A FIFO where a package belongs would block an open for reading until a
// writer comes; OpenIn and Open refuse it at once.
func TestOpenFIFORefused(t *testing.T) {
	root, dir, _ := cacheRoot(t)
	if err := syscall.Mkfifo(filepath.Join(dir, "var/cache/fifo.deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() (*Package, error){
		"OpenIn": func() (*Package, error) { return OpenIn(root, "var/cache/fifo.deb", DefaultLimits) },
		"Open":   func() (*Package, error) { return Open(filepath.Join(dir, "var/cache/fifo.deb")) },
	} {
		done := make(chan error, 1)
		go func() { _, err := open(); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, rootfs.ErrNotRegular) || !strings.Contains(err.Error(), "fifo.deb") {
				t.Errorf("%s: err = %v, want a not-a-regular-file error naming fifo.deb", name, err)
			}
		case <-time.After(10 * time.Second):
			// Unblock the open so the test binary can end.
			if w, err := os.OpenFile(filepath.Join(dir, "var/cache/fifo.deb"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			t.Fatalf("%s blocked on a FIFO", name)
		}
	}
}

// A symbolic link is followed inside the root only.
func TestOpenInSymlink(t *testing.T) {
	root, dir, _ := cacheRoot(t)
	outside := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, "var/cache/k.deb"))
	os.WriteFile(filepath.Join(outside, "evil.deb"), b, 0o644)
	os.Symlink(filepath.Join(outside, "evil.deb"), filepath.Join(dir, "var/cache/abs.deb"))
	os.Symlink("../../../"+filepath.Base(outside)+"/evil.deb", filepath.Join(dir, "var/cache/rel.deb"))
	os.Symlink("k.deb", filepath.Join(dir, "var/cache/inside.deb"))
	for _, name := range []string{"abs.deb", "rel.deb"} {
		if _, err := OpenIn(root, "var/cache/"+name, DefaultLimits); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want a refusal naming it", name, err)
		}
	}
	if _, err := OpenIn(root, "var/cache/inside.deb", DefaultLimits); err != nil {
		t.Errorf("link inside the root: %v", err)
	}
}

// Extraction reopens through the root: a package swapped for a link that
// leaves the root after OpenIn is not read.
func TestOpenInSwappedForLink(t *testing.T) {
	root, dir, _ := cacheRoot(t)
	p, err := OpenIn(root, "var/cache/k.deb", DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "k.deb")
	os.Rename(filepath.Join(dir, "var/cache/k.deb"), outside)
	if err := os.Symlink(outside, filepath.Join(dir, "var/cache/k.deb")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Extract([]string{"usr/bin/kubelet"}, io.Discard); err == nil {
		t.Fatal("extracted through a link that leaves the root")
	}
}

// xzDeb is a deb whose data.tar holds body as usr/bin/kubelet, compressed
// by the xz tool with args.
func xzDeb(t *testing.T, body []byte, args ...string) string {
	t.Helper()
	needTool(t, lookTools("xz", "ar", "gzip"))
	dir := t.TempDir()
	gz, err := withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Body: body}, otherFile).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	gzPath := filepath.Join(dir, "k_gzip_.deb")
	os.WriteFile(gzPath, gz, 0o644)
	path, err := rewrapDeb(dir, gzPath, "xz", ".xz", append(append([]string{"xz"}, args...), "data.tar")...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWindowLimit(t *testing.T) {
	body := bytes.Repeat(randomBytes(5, 4096), 64) // 256 KiB
	small := Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 1 << 20, MaxWindow: 1 << 20}
	cases := []struct {
		name string
		path string
		msg  string
	}{
		// xz's default preset declares an 8 MiB dictionary.
		{"xz one block", xzDeb(t, body, "-T1"), "LZMA2 dictionary larger than the 1 MiB limit (Limits.MaxWindow)"},
		{"xz blocks", xzDeb(t, body, "-T1", "--block-size=16KiB"), "LZMA2 dictionary larger than the 1 MiB limit (Limits.MaxWindow)"},
		{"lzma rpm", fixtureFor(t, platform.RPM, "lzma", platform.AMD64).path, "LZMA dictionary of 8 MiB, more than the 1 MiB limit (Limits.MaxWindow)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := OpenLimits(c.path, small)
			if err == nil {
				_, err = p.Extract([]string{"usr/bin/kubelet"}, io.Discard)
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), c.path) {
				t.Fatalf("err = %v, want ErrTooLarge naming the package and %q", err, c.msg)
			}
			// Within the default limit the same package is fine.
			p, err = Open(c.path)
			if err == nil {
				_, err = p.Extract([]string{"usr/bin/kubelet"}, io.Discard)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestZstdWindowLimit: a zstd frame declaring a window beyond the limit.
func TestZstdWindowLimit(t *testing.T) {
	needTool(t, lookTools("zstd"))
	f := fixtureFor(t, platform.RPM, "zstd", platform.AMD64) // rpmbuild, level 19: 8 MiB window
	small := Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 1 << 20, MaxWindow: 1 << 20}
	p, err := OpenLimits(f.path, small)
	if err == nil {
		_, err = p.Extract([]string{"usr/bin/kubelet"}, io.Discard)
	}
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "zstd window larger than the 1 MiB limit (Limits.MaxWindow)") {
		t.Fatalf("err = %v, want the zstd window limit", err)
	}
}

// TestXZMemoryFlat extracts a multi-block xz deb with GOMAXPROCS far above
// the decoder count: what the extraction allocates (a count, not a time)
// stays at two decoders and their buffers however many blocks there are,
// because decoded blocks go to the scratch file, not the heap.
func TestXZMemoryFlat(t *testing.T) {
	body := bytes.Repeat(randomBytes(9, 1<<16), 192) // 12 MiB, 48 blocks
	path := xzDeb(t, body, "-T1", "-0", "--block-size=256KiB")
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16))
	rootDir := t.TempDir()
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, res, err := p.ExtractTo(root, "opt/bin/kubelet", []string{"usr/bin/kubelet"})
	runtime.ReadMemStats(&after)
	if err != nil || res.Size != int64(len(body)) {
		t.Fatalf("ExtractTo: %v, %+v", err, res)
	}
	// Two decoders with xz -0's 256 KiB dictionary, their 256 KiB
	// buffers, the copy's 8 chunks of 256 KiB: under 5 MiB. Holding the
	// decoded blocks would be 12 MiB and a decoder per block 48 × 256 KiB.
	const bound = 8 << 20
	t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
	if got := after.TotalAlloc - before.TotalAlloc; got > bound {
		t.Fatalf("extracting 48 xz blocks allocated %d MiB, more than %d MiB", got>>20, bound>>20)
	}
	if got, _ := os.ReadFile(filepath.Join(rootDir, "opt/bin/kubelet")); !bytes.Equal(got, body) {
		t.Fatal("wrong content")
	}
	if files := filesUnder(t, rootDir); len(files) != 1 {
		t.Errorf("files left: %q (the scratch file must not outlive the extraction)", files)
	}
}

// Parallel extractions sharing DecoderSlots all finish, whatever the
// decoders they wait for.
func TestDecoderSlotsShared(t *testing.T) {
	body := bytes.Repeat(randomBytes(11, 4096), 256) // 1 MiB
	path := xzDeb(t, body, "-T1", "-0", "--block-size=64KiB")
	l := DefaultLimits
	l.Decoders = NewDecoderSlots(1)
	rootDir := t.TempDir()
	root, _ := os.OpenRoot(rootDir)
	defer root.Close()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			p, err := OpenLimits(path, l)
			if err == nil {
				_, _, err = p.ExtractTo(root, "opt/bin/k"+string(rune('0'+i)), []string{"usr/bin/kubelet"})
			}
			errs <- err
		}()
	}
	for range 4 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("extractions sharing one decoder slot did not finish")
		}
	}
	for i := range 4 {
		if got, _ := os.ReadFile(filepath.Join(rootDir, "opt/bin/k"+string(rune('0'+i)))); !bytes.Equal(got, body) {
			t.Fatalf("k%d: wrong content", i)
		}
	}
}

// md5sums is the check exactly where the compression has none: a lying
// md5sums fails a zstd deb written without frame checksums and an
// uncompressed one, and is left to the checksum where there is one.
func TestMD5SumsWhereNoOtherCheck(t *testing.T) {
	needTool(t, lookTools("zstd", "xz", "ar", "gzip"))
	dir := t.TempDir()
	lying, err := withFiles(pkgtest.File{Name: kubelet.Name, Body: kubeletBody, Digest: strings.Repeat("0", 32)}).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	gz := filepath.Join(dir, "k_gzip_.deb")
	os.WriteFile(gz, lying, 0o644)
	rewrap := func(label, suffix string, compress ...string) string {
		p, err := rewrapDeb(dir, gz, label, suffix, compress...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path   string
		checks string // "" when md5sums must catch the lie
	}{
		{gz, "gzip CRC32"},
		{rewrap("zstd", ".zst", "zstd", "-q", "--check", "data.tar"), "zstd frame checksum"},
		{rewrap("zstdnocheck", ".zst", "zstd", "-q", "--no-check", "data.tar"), ""},
		{rewrap("xznone", ".xz", "xz", "-T1", "--check=none", "data.tar"), ""},
		{rewrap("xzsha", ".xz", "xz", "-T1", "--check=sha256", "data.tar"), "xz SHA-256"},
		{rewrap("none", "", "true"), ""},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			p, err := Open(c.path)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			e, err := p.Extract([]string{"usr/bin/kubelet"}, &buf)
			if c.checks == "" {
				if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "md5sums declares 0000") {
					t.Fatalf("err = %v, want the md5sums mismatch", err)
				}
				return
			}
			if err != nil || !bytes.Equal(buf.Bytes(), kubeletBody) || strings.Join(e.Checks, ", ") != c.checks {
				t.Fatalf("err %v, Checks %q, want %q", err, e.Checks, c.checks)
			}
		})
	}
}
