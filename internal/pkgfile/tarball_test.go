package pkgfile

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/rootfs/rootfstest"
)

const (
	nodeKubelet = "kubernetes/node/bin/kubelet"
	nodeKubectl = "kubernetes/node/bin/kubectl"
)

var (
	nodeKubeletBody = bytes.Repeat([]byte("kubelet from a kubernetes-node tarball "), 200)
	nodeKubectlBody = bytes.Repeat([]byte("kubectl "), 500)
)

// tarRoot is a root holding the archive "cache/a.tar" and nothing else.
func tarRoot(t *testing.T, archive []byte) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cache/a.tar"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	return rootfstest.Open(t, dir), dir
}

// extractFrom opens the archive and extracts member to opt/bin/kubelet.
func extractFrom(t *testing.T, archive []byte, member string, l Limits) (Entry, rootfs.Result, string, error) {
	t.Helper()
	root, dir := tarRoot(t, archive)
	tb, err := OpenTarball(root, "cache/a.tar", l)
	if err != nil {
		return Entry{}, rootfs.Result{}, dir, err
	}
	e, res, err := tb.ExtractTo(root, "opt/bin/kubelet", member)
	return e, res, dir, err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestTarballsFromGNUTar reads what GNU tar writes, in every compression
// it offers that reconcile reads, with and without the "./" prefix.
func TestTarballsFromGNUTar(t *testing.T) {
	pkgbuild.Require(t, "tar", "gzip", "zstd", "xz", "bzip2")
	src := t.TempDir()
	bin := filepath.Join(src, "kubernetes/node/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"kubelet": nodeKubeletBody, "kubectl": nodeKubectlBody} {
		if err := os.WriteFile(filepath.Join(bin, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// runc-style: a link to the binary in a sibling directory.
	if err := os.Symlink("node/bin/kubelet", filepath.Join(src, "kubernetes/kubelet")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, flag, comp string
		dot              bool
	}{
		{"tar.gz", "-z", compGzip, false},
		{"tgz with ./", "-z", compGzip, true},
		{"tar", "", compNone, false},
		{"tar.zst", "--zstd", compZstd, true},
		{"tar.xz", "-J", compXZ, false},
		{"tar.bz2", "-j", compBzip2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-c", "-C", src, "--owner=0", "--group=0"}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			if tc.dot {
				args = append(args, ".")
			} else {
				args = append(args, "kubernetes")
			}
			out, err := exec.Command("tar", args...).Output()
			if err != nil {
				t.Fatalf("tar %v: %v", args, err)
			}
			root, dir := tarRoot(t, out)
			tb, err := OpenTarball(root, "cache/a.tar", DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if tb.Compression != tc.comp || tb.Path != "/cache/a.tar" {
				t.Fatalf("Compression %q Path %q, want %q /cache/a.tar", tb.Compression, tb.Path, tc.comp)
			}
			for member, body := range map[string][]byte{nodeKubelet: nodeKubeletBody, nodeKubectl: nodeKubectlBody, "kubernetes/kubelet": nodeKubeletBody} {
				dest := "opt/bin/" + filepath.Base(member)
				e, res, err := tb.ExtractTo(root, dest, member)
				if err != nil {
					t.Fatalf("%s: %v", member, err)
				}
				got, err := os.ReadFile(filepath.Join(dir, dest))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, body) || res.Size != int64(len(body)) || e.Size != res.Size || res.SHA256 != sha256Hex(body) {
					t.Fatalf("%s: wrote %d bytes (entry %+v, result %+v), want %d with sha256 %s", member, len(got), e, res, len(body), sha256Hex(body))
				}
				if e.Mode != 0o755 || !strings.HasSuffix(e.Name, "kubernetes/node/bin/"+filepath.Base(member)) {
					t.Fatalf("%s: entry %+v", member, e)
				}
				if fi, err := os.Stat(filepath.Join(dir, dest)); err != nil || fi.Mode().Perm() != 0o755 {
					t.Fatalf("%s: %v, %v", dest, fi.Mode(), err)
				}
			}
		})
	}
}

func TestHostileTarballs(t *testing.T) {
	kubelet := pkgtest.File{Name: nodeKubelet, Body: nodeKubeletBody}
	kubectl := pkgtest.File{Name: nodeKubectl, Body: nodeKubectlBody}
	gz := func(files ...pkgtest.File) func() ([]byte, error) {
		return func() ([]byte, error) { return pkgtest.Compress(compGzip, pkgtest.Tar(files)) }
	}
	good := gz(kubelet, kubectl)
	// cut returns the archive build makes with its last n bytes removed.
	cut := func(build func() ([]byte, error), n int) func() ([]byte, error) {
		return edit(build, func(b []byte) []byte { return b[:len(b)-n] })
	}
	tiny := Limits{MaxFileSize: 100, MaxUnpackedSize: 1 << 20}
	tests := []struct {
		name   string
		build  func() ([]byte, error)
		member string // default nodeKubelet
		limits *Limits
		want   error  // nil: must extract nodeKubeletBody
		msg    string // in the error message
	}{
		{"baseline", good, "", nil, nil, ""},
		{"leading slash is the archive root", gz(pkgtest.File{Name: "/" + nodeKubelet, Body: nodeKubeletBody}), "", nil, nil, ""},
		{"member asked with ./", good, "./" + nodeKubelet, nil, nil, ""},
		{"zstd", func() ([]byte, error) { return pkgtest.Compress(compZstd, pkgtest.Tar([]pkgtest.File{kubelet})) }, "", nil, nil, ""},
		{"gzip of several members", func() ([]byte, error) {
			tr := pkgtest.Tar([]pkgtest.File{kubectl, kubelet})
			half := len(tr) / 2
			a, err := pkgtest.Compress(compGzip, tr[:half])
			if err != nil {
				return nil, err
			}
			b, err := pkgtest.Compress(compGzip, tr[half:])
			return append(a, b...), err
		}, "", nil, nil, ""},
		{"symlink followed inside", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "../../server/bin/kubelet"},
			pkgtest.File{Name: "kubernetes/server/bin/kubelet", Body: nodeKubeletBody}), "", nil, nil, ""},
		{"absolute symlink read from the archive root", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "/kubernetes/server/bin/kubelet"},
			pkgtest.File{Name: "kubernetes/server/bin/kubelet", Body: nodeKubeletBody}), "", nil, nil, ""},
		{"hard link resolved inside", gz(pkgtest.File{Name: "kubernetes/server/bin/kubelet", Body: nodeKubeletBody},
			pkgtest.File{Name: nodeKubelet, Type: tar.TypeLink, Linkname: "kubernetes/server/bin/kubelet"}), "", nil, nil, ""},

		{"traversal with ..", gz(kubelet, pkgtest.File{Name: "kubernetes/../../etc/cron.d/x", Body: []byte("x")}), "", nil, ErrUnsafe, `kubernetes/../../etc/cron.d/x: unsafe entry: entry name escapes the archive root`},
		{"traversal before the wanted entry", gz(pkgtest.File{Name: "../x", Body: []byte("x")}, kubelet), "", nil, ErrUnsafe, "escapes the archive root"},
		{"absolute after ./", gz(pkgtest.File{Name: ".//etc/passwd", Body: []byte("x")}, kubelet), "", nil, ErrUnsafe, "escapes"},
		{"symlink out (absolute)", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "/etc/shadow"}), "", nil, ErrUnsafe, `is a link to "/etc/shadow", which names no file in the archive`},
		{"symlink climbing out", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "../../../../etc/shadow"}), "", nil, ErrUnsafe, "which leaves the archive"},
		{"symlink loop", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "kubelet2"},
			pkgtest.File{Name: "kubernetes/node/bin/kubelet2", Type: tar.TypeSymlink, Linkname: "kubelet"}), "", nil, ErrUnsafe, "more than 8 links in a row"},
		{"hard link out", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeLink, Linkname: "../etc/shadow"}), "", nil, ErrUnsafe, "leaves the archive"},
		{"hard link to nothing", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeLink, Linkname: "etc/shadow"}), "", nil, ErrUnsafe, "names no file"},
		{"duplicate", gz(kubelet, kubectl, kubelet), "", nil, ErrUnsafe, "appears more than once"},
		{"duplicate spelt differently", gz(kubelet, pkgtest.File{Name: "./kubernetes/node/./bin/kubelet", Body: []byte("evil")}), "", nil, ErrUnsafe, "appears more than once"},
		{"duplicate behind a link", gz(pkgtest.File{Name: nodeKubelet, Type: tar.TypeSymlink, Linkname: "k"},
			pkgtest.File{Name: "kubernetes/node/bin/k", Body: nodeKubeletBody}, pkgtest.File{Name: "kubernetes/node/bin/k", Body: []byte("evil")}), "", nil, ErrUnsafe, "appears more than once"},
		{"directory", gz(pkgtest.File{Name: nodeKubelet + "/", Type: tar.TypeDir}), "", nil, ErrUnsafe, "not a regular file"},
		{"not in the archive", good, "kubernetes/node/bin/kube-proxy", nil, ErrNotFound, "no kubernetes/node/bin/kube-proxy in the archive"},
		{"member outside the root", good, "../kubelet", nil, nil, `path "../kubelet" is not a path below the archive root`},
		{"file too large", good, "", &tiny, ErrTooLarge, "limit 100"},
		{"unpacked too large", gz(pkgtest.File{Name: "big", Body: make([]byte, 1<<20)}, kubelet), "", &Limits{MaxFileSize: 1 << 20, MaxUnpackedSize: 1 << 19}, ErrTooLarge, "exceeds the limit"},
		{"bomb after the end marker", func() ([]byte, error) {
			return pkgtest.Compress(compGzip, append(pkgtest.Tar([]pkgtest.File{kubelet}), make([]byte, 1<<20)...))
		}, "", &Limits{MaxFileSize: 1 << 20, MaxUnpackedSize: 1 << 19}, ErrTooLarge, "exceeds the limit"},
		{"huge declared size", func() ([]byte, error) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			err := tw.WriteHeader(&tar.Header{Name: nodeKubelet, Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o755})
			buf.Write(nodeKubeletBody)
			return buf.Bytes(), err
		}, "", nil, ErrTooLarge, "1099511627776 bytes, limit 1073741824"},
		{"huge declared size of another entry", func() ([]byte, error) {
			var buf bytes.Buffer
			tr := pkgtest.Tar([]pkgtest.File{kubelet})
			buf.Write(tr[:len(tr)-1024]) // without the end marker
			tw := tar.NewWriter(&buf)
			err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644})
			return buf.Bytes(), err
		}, "", nil, ErrCorrupt, "unexpected EOF"},
		{"truncated inside the wanted entry", func() ([]byte, error) { return pkgtest.Tar([]pkgtest.File{kubelet})[:tarBlock+100], nil }, "", nil, ErrCorrupt, "100 of 7800 declared bytes read"},
		{"truncated gzip", cut(good, 200), "", nil, ErrCorrupt, "unexpected EOF"},
		{"gzip trailer missing", cut(good, 4), "", nil, ErrCorrupt, "unexpected EOF"},
		{"corrupt gzip", edit(good, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }), "", nil, ErrCorrupt, "corrupt package"},
		{"corrupt gzip header", edit(good, func(b []byte) []byte { b[2] = 0; return b }), "", nil, ErrCorrupt, "gzip"},
		{"garbage after the gzip stream", edit(good, func(b []byte) []byte { return append(b, "this is not another gzip member"...) }), "", nil, ErrCorrupt, "gzip"},
		{"not a tarball", func() ([]byte, error) { return []byte("<html>404 not found</html>"), nil }, "", nil, ErrCorrupt, "unknown magic bytes"},
		{"empty file", func() ([]byte, error) { return nil, nil }, "", nil, ErrCorrupt, "unknown magic bytes"},
	}
	refused := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			l := DefaultLimits
			if tc.limits != nil {
				l = *tc.limits
			}
			member := cmpOr(tc.member, nodeKubelet)
			e, res, dir, err := extractFrom(t, b, member, l)
			if tc.want == nil && tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if e.Size != int64(len(nodeKubeletBody)) || res.SHA256 != sha256Hex(nodeKubeletBody) {
					t.Fatalf("entry %+v result %+v", e, res)
				}
				return
			}
			if err == nil {
				t.Fatalf("extracted %+v, want an error", e)
			}
			refused++
			t.Log(err)
			if tc.want != nil {
				var te *Error
				if !errors.Is(err, tc.want) || !errors.As(err, &te) || te.Path != "/cache/a.tar" {
					t.Fatalf("error %v: want an *Error of kind %v naming /cache/a.tar", err, tc.want)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "/cache/a.tar") {
				t.Fatalf("error %q does not say %q about /cache/a.tar", err, tc.msg)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "opt/bin")); len(ents) != 0 {
				t.Fatalf("opt/bin holds %v after a failure", ents)
			}
		})
	}
	t.Logf("%d hostile tarballs refused", refused)
}

func TestTarballNotRegular(t *testing.T) {
	root, dir := tarRoot(t, nil)
	if err := syscall.Mkfifo(filepath.Join(dir, "cache/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenTarball(root, "cache/fifo", DefaultLimits)
	if !errors.Is(err, rootfs.ErrNotRegular) {
		t.Fatalf("FIFO: %v, want ErrNotRegular", err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "cache/out")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTarball(root, "cache/out", DefaultLimits); err == nil {
		t.Fatal("a symbolic link out of the root was opened")
	}
}

func TestTarballChangedAfterOpen(t *testing.T) {
	b, err := pkgtest.Compress(compGzip, pkgtest.Tar([]pkgtest.File{{Name: nodeKubelet, Body: nodeKubeletBody}}))
	if err != nil {
		t.Fatal(err)
	}
	root, dir := tarRoot(t, b)
	tb, err := OpenTarball(root, "cache/a.tar", DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cache/b.tar"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "cache/b.tar"), filepath.Join(dir, "cache/a.tar")); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Extract(nodeKubelet, io.Discard); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "changed since it was opened") {
		t.Fatalf("replaced tarball: %v", err)
	}
}

// FuzzOpenTarball feeds arbitrary bytes to the tar reader: it must return
// an *Error naming the file or write exactly the entry it reports.
func FuzzOpenTarball(f *testing.F) {
	files := []pkgtest.File{
		{Name: "./kubernetes/", Type: tar.TypeDir},
		{Name: "./kubernetes/node/bin/kubectl", Body: []byte("kubectl")},
		{Name: "./kubernetes/kubelet", Type: tar.TypeSymlink, Linkname: "node/bin/kubelet"},
		{Name: "./kubernetes/node/bin/kubelet", Body: []byte("kubelet")},
	}
	for _, comp := range []string{compGzip, compZstd, compXZ, compNone} {
		b, err := pkgtest.Compress(comp, pkgtest.Tar(files))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer root.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, "t"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		tb, err := OpenTarball(root, "t", fuzzLimits)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Path != "/t" {
				t.Fatalf("OpenTarball: %v is not an *Error naming the file", err)
			}
			return
		}
		var n sizeWriter
		e, err := tb.Extract("kubernetes/kubelet", &n)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Path != "/t" {
				t.Fatalf("Extract: %v is not an *Error naming the file", err)
			}
			return
		}
		if int64(n) != e.Size || e.Size > fuzzLimits.MaxFileSize {
			t.Fatalf("wrote %d bytes for an entry of %d", n, e.Size)
		}
	})
}

type sizeWriter int64

func (s *sizeWriter) Write(p []byte) (int, error) { *s += sizeWriter(len(p)); return len(p), nil }
