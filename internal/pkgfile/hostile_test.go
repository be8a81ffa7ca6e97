package pkgfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/testreport"

	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
)

var (
	kubeletBody = bytes.Repeat([]byte("kubelet binary "), 300)
	kubelet     = pkgtest.File{Name: "./usr/bin/kubelet", Body: kubeletBody}
	otherFile   = pkgtest.File{Name: "./usr/share/doc/kubelet/copyright", Body: []byte("c"), Mode: 0o644}
)

func deb(d pkgtest.Deb) func() ([]byte, error) { return d.Bytes }
func rpm(r pkgtest.RPM) func() ([]byte, error) { return r.Bytes }

// debMembers builds a deb from good members after edit has changed them.
func debMembers(d pkgtest.Deb, edit func([]pkgtest.ArMember) []pkgtest.ArMember) func() ([]byte, error) {
	return func() ([]byte, error) {
		m, err := d.Members()
		if err != nil {
			return nil, err
		}
		return pkgtest.Ar(edit(m)), nil
	}
}

// edit returns a package built by build with change applied to its bytes.
func edit(build func() ([]byte, error), change func([]byte) []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := build()
		if err != nil {
			return nil, err
		}
		return change(bytes.Clone(b)), nil
	}
}

var goodDeb = pkgtest.Deb{Files: []pkgtest.File{{Name: "./", Type: tar.TypeDir}, {Name: "./usr/bin/", Type: tar.TypeDir}, kubelet, otherFile}}

func withFiles(files ...pkgtest.File) pkgtest.Deb {
	d := goodDeb
	d.Files = files
	return d
}

// bareDeb has no md5sums, so that what a test puts in data.tar is not
// caught there first.
func bareDeb(files ...pkgtest.File) pkgtest.Deb {
	d := withFiles(files...)
	d.NoMD5Sums = true
	return d
}

var goodRPM = pkgtest.RPM{Files: []pkgtest.File{kubelet, otherFile}, Epoch: 2, Requires: []string{"glibc"}}

func rpmWith(change func(*pkgtest.RPM)) pkgtest.RPM {
	r := goodRPM
	change(&r)
	return r
}

func TestHostilePackages(t *testing.T) {
	tiny := Limits{MaxFileSize: 100, MaxMetadataSize: 64 << 20, MaxUnpackedSize: 1 << 20}
	tests := []struct {
		name   string
		build  func() ([]byte, error)
		limits *Limits
		want   error  // nil: must extract kubeletBody
		msg    string // in the error message
	}{
		// Packages that must work.
		{"deb baseline", deb(goodDeb), nil, nil, ""},
		{"deb xz", deb(func() pkgtest.Deb { d := goodDeb; d.Compression = "xz"; return d }()), nil, nil, ""},
		{"deb no md5sums", deb(func() pkgtest.Deb { d := goodDeb; d.NoMD5Sums = true; return d }()), nil, nil, ""},
		{"deb gnu trailing slash", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember {
			for i := range m {
				m[i].Name += "/"
			}
			return m
		}), nil, nil, ""},
		{"deb underscore member ignored", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember {
			return []pkgtest.ArMember{m[0], {Name: "_gpgorigin", Body: []byte("sig")}, m[1], m[2], {Name: "extra", Body: []byte("later members are ignored")}}
		}), nil, nil, ""},
		{"deb symlink followed inside the package", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "../sbin/kubelet"},
			pkgtest.File{Name: "./usr/sbin/kubelet", Body: kubeletBody})), nil, nil, ""},
		{"deb absolute symlink read from the package root", deb(withFiles(pkgtest.File{Name: "./usr/sbin/kubelet", Body: kubeletBody},
			pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "/usr/sbin/kubelet"})), nil, nil, ""},
		{"rpm symlink followed inside the package", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "../sbin/kubelet"}, {Name: "./usr/sbin/kubelet", Body: kubeletBody}}
		})), nil, nil, ""},
		{"rpm baseline", rpm(goodRPM), nil, nil, ""},
		{"rpm absolute cpio names (rpmpack)", rpm(rpmWith(func(r *pkgtest.RPM) { r.AbsoluteNames = true })), nil, nil, ""},
		{"rpm xz", rpm(rpmWith(func(r *pkgtest.RPM) { r.Compression = "xz" })), nil, nil, ""},
		{"rpm zstd", rpm(rpmWith(func(r *pkgtest.RPM) { r.Compression = "zstd" })), nil, nil, ""},

		// ar container.
		{"ar bad terminator", edit(deb(goodDeb), func(b []byte) []byte { b[8+58] = 'x'; return b }), nil, ErrCorrupt, "terminator"},
		{"ar bad size field", edit(deb(goodDeb), func(b []byte) []byte { b[8+48] = 'z'; return b }), nil, ErrCorrupt, "bad size field"},
		{"ar bad mtime field", edit(deb(goodDeb), func(b []byte) []byte { b[8+16] = '-'; return b }), nil, ErrCorrupt, "bad mtime field"},
		{"ar bad mode field", edit(deb(goodDeb), func(b []byte) []byte { b[8+40] = '9'; return b }), nil, ErrCorrupt, "bad mode field"},
		{"ar size beyond file", edit(deb(goodDeb), func(b []byte) []byte { copy(b[8+48:], "9999999   "); return b }), nil, ErrCorrupt, "truncated"},
		{"debian-binary not first", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { return m[1:] }), nil, ErrCorrupt, "debian-binary"},
		{"debian-binary 3.0", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { m[0].Body = []byte("3.0\n"); return m }), nil, ErrUnsupported, "format version"},
		{"data before control", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { return []pkgtest.ArMember{m[0], m[2], m[1]} }), nil, ErrCorrupt, "control.tar"},
		{"missing data.tar", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { return m[:2] }), nil, ErrCorrupt, "missing data.tar"},
		{"missing control.tar", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { return m[:1] }), nil, ErrCorrupt, "missing control.tar"},
		{"wrong compression magic", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { m[2].Name = "data.tar.xz"; return m }), nil, ErrCorrupt, "wrong magic"},
		{"zstd magic for gzip control", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { m[1].Name = "control.tar.zst"; return m }), nil, ErrCorrupt, "wrong magic"},
		{"unknown compression", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { m[2].Name = "data.tar.lz4"; return m }), nil, ErrUnsupported, "data.tar.lz4"},
		{"control without Version", deb(pkgtest.Deb{Control: "Package: k\nArchitecture: amd64\n", Files: goodDeb.Files}), nil, ErrCorrupt, "no version field"},
		{"control bad version", deb(pkgtest.Deb{Version: "x1.0", Files: goodDeb.Files}), nil, ErrCorrupt, "version"},

		// data.tar entries.
		{"deb entry escapes with ..", deb(bareDeb(kubelet, pkgtest.File{Name: "./usr/../../etc/cron.d/x", Body: []byte("x")})), nil, ErrUnsafe, `"./usr/../../etc/cron.d/x" escapes`},
		{"deb entry absolute after ./", deb(bareDeb(pkgtest.File{Name: ".//etc/passwd", Body: []byte("x")}, kubelet)), nil, ErrUnsafe, "escapes"},
		{"deb duplicate entry", deb(bareDeb(kubelet, kubelet)), nil, ErrUnsafe, "appears 2 times"},
		{"deb duplicate spelt differently", deb(bareDeb(kubelet, pkgtest.File{Name: "/usr/bin/kubelet", Body: []byte("evil")})), nil, ErrUnsafe, "appears 2 times"},
		{"deb duplicate via ..", deb(bareDeb(kubelet, pkgtest.File{Name: "./usr/lib/../bin/kubelet", Body: []byte("evil")})), nil, ErrUnsafe, "appears 2 times"},
		{"deb symlink out of the package", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "/etc/shadow"})), nil, ErrUnsafe, `symbolic link to "/etc/shadow"`},
		{"deb symlink climbing out", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "../../../etc/shadow"})), nil, ErrUnsafe, "leaves the package"},
		{"deb symlink loop", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeSymlink, Linkname: "kubelet2"},
			pkgtest.File{Name: "./usr/bin/kubelet2", Type: tar.TypeSymlink, Linkname: "kubelet"})), nil, ErrUnsafe, "symbolic links in a row"},
		{"rpm symlink climbing out", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{{Name: kubelet.Name, Type: tar.TypeSymlink, Linkname: "../../../../etc/shadow"}}
		})), nil, ErrUnsafe, "leaves the package"},
		{"deb hard link", deb(withFiles(otherFile, pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeLink, Linkname: "./usr/share/doc/kubelet/copyright"})), nil, ErrUnsafe, "hard link"},
		{"deb directory", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet/", Type: tar.TypeDir})), nil, ErrUnsafe, "not a regular file"},
		// md5sums is verified where the compression checks nothing…
		{"deb md5 mismatch", deb(func() pkgtest.Deb {
			d := withFiles(pkgtest.File{Name: kubelet.Name, Body: kubeletBody, Digest: strings.Repeat("0", 32)})
			d.Compression = "none"
			return d
		}()), nil, ErrDigest, "md5sums declares 0000"},
		// …and left to the compression's check where it has one.
		{"deb md5 mismatch under gzip CRC32", deb(withFiles(pkgtest.File{Name: kubelet.Name, Body: kubeletBody, Digest: strings.Repeat("0", 32)})), nil, nil, ""},
		{"deb file too large", deb(goodDeb), &tiny, ErrTooLarge, "limit 100"},
		{"deb control too large", deb(goodDeb), &Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 512}, ErrTooLarge, "control.tar.gz"},
		{"deb unpacked too large", deb(withFiles(otherFile, pkgtest.File{Name: "./big", Body: make([]byte, 1<<20)}, kubelet)), &Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 1 << 20, MaxUnpackedSize: 1 << 19}, ErrTooLarge, "data.tar.gz"},
		{"deb declared size beyond data", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember {
			tr := pkgtest.Tar(goodDeb.Files)
			cut := bytes.Index(tr, kubeletBody[:100]) + 1000 // inside kubelet's content
			m[2] = pkgtest.ArMember{Name: "data.tar", Body: tr[:cut]}
			return m
		}), nil, ErrCorrupt, "unexpected EOF"},

		// rpm.
		{"rpm bad lead magic", edit(rpm(goodRPM), func(b []byte) []byte { b[0] = 0; return b }), nil, ErrCorrupt, "unknown magic"},
		{"rpm bad header magic", edit(rpm(goodRPM), func(b []byte) []byte { b[96] = 0; return b }), nil, ErrCorrupt, "bad header magic"},
		{"rpm header digest", rpm(rpmWith(func(r *pkgtest.RPM) { r.HeaderSHA256 = strings.Repeat("ab", 32) })), nil, ErrDigest, "SHA-256"},
		{"rpm payload digest", rpm(rpmWith(func(r *pkgtest.RPM) { r.PayloadDigest = strings.Repeat("ab", 32) })), nil, ErrDigest, "compressed payload"},
		{"rpm file digest", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{{Name: kubelet.Name, Body: kubeletBody, Digest: strings.Repeat("cd", 32)}}
		})), nil, ErrDigest, "header declares " + strings.Repeat("cd", 32)},
		{"rpm file changed in payload", rpm(rpmWith(func(r *pkgtest.RPM) {
			evil := bytes.Clone(kubeletBody)
			evil[0] = 'K'
			r.Payload = []pkgtest.File{{Name: kubelet.Name, Body: evil}}
		})), nil, ErrDigest, "usr/bin/kubelet"},
		{"rpm size differs from header", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Payload = []pkgtest.File{{Name: kubelet.Name, Body: kubeletBody[:10]}}
		})), nil, ErrCorrupt, "10 bytes in the payload"},
		{"rpm duplicate in payload", rpm(rpmWith(func(r *pkgtest.RPM) { r.Payload = []pkgtest.File{kubelet, kubelet} })), nil, ErrUnsafe, "more than once"},
		{"rpm duplicate in header", rpm(rpmWith(func(r *pkgtest.RPM) { r.Files = []pkgtest.File{kubelet, kubelet} })), nil, ErrUnsafe, "listed twice"},
		{"rpm missing from payload", rpm(rpmWith(func(r *pkgtest.RPM) { r.Payload = []pkgtest.File{otherFile} })), nil, ErrCorrupt, "missing from the payload"},
		{"rpm symlink", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{{Name: kubelet.Name, Type: tar.TypeSymlink, Linkname: "/etc/shadow"}}
		})), nil, ErrUnsafe, `symbolic link to "/etc/shadow"`},
		{"rpm symlink in payload only", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Payload = []pkgtest.File{{Name: kubelet.Name, Type: tar.TypeSymlink, Linkname: strings.Repeat("x", len(kubeletBody))}}
		})), nil, ErrUnsafe, "not a regular file in the payload"},
		{"rpm payload name escapes", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Payload = []pkgtest.File{{Name: "./../../etc/x", Body: []byte("x")}, kubelet}
		})), nil, ErrUnsafe, "escapes"},
		{"rpm header name escapes", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{kubelet, {Name: "/usr/../../etc/x", Body: []byte("x")}}
		})), nil, ErrUnsafe, "escapes"},
		{"rpm size in signature", rpm(rpmWith(func(r *pkgtest.RPM) { r.SizeDelta = 7 })), nil, ErrCorrupt, "truncated?"},
		{"rpm file too large", rpm(goodRPM), &tiny, ErrTooLarge, "limit 100"},
		{"rpm header too large", rpm(goodRPM), &Limits{MaxFileSize: 1 << 20, MaxMetadataSize: 100}, ErrTooLarge, "header"},
		{"rpm header index out of store", edit(rpm(goodRPM), func(b []byte) []byte {
			// first index entry of the signature header: offset field
			copy(b[96+16+8:], []byte{0x7f, 0, 0, 0})
			return b
		}), nil, ErrCorrupt, "outside the"},
		{"rpm huge tag count", edit(rpm(goodRPM), func(b []byte) []byte { copy(b[96+16+12:], []byte{0, 0x20, 0, 0}); return b }), nil, ErrTooLarge, "limit 1048576"},
		{"deb too many md5sums", deb(func() pkgtest.Deb {
			d := goodDeb
			var files []pkgtest.File
			for i := range maxFiles + 1 {
				files = append(files, pkgtest.File{Name: fmt.Sprintf("./f%d", i)})
			}
			d.Files = append(files, kubelet)
			return d
		}()), nil, ErrTooLarge, "more than 262144 files"},
		{"rpm huge index count", edit(rpm(goodRPM), func(b []byte) []byte { copy(b[96+8:], []byte{0xff, 0xff, 0xff, 0xff}); return b }), nil, ErrTooLarge, "header"},
		{"deb wanted path is a fifo", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeFifo})), nil, ErrUnsafe, "not a regular file"},
		{"deb wanted path is a device", deb(withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Type: tar.TypeChar})), nil, ErrUnsafe, "not a regular file"},
		{"deb decompression bomb", deb(bareDeb(pkgtest.File{Name: "./zeros", Body: make([]byte, 64<<20)}, kubelet)),
			&Limits{MaxFileSize: 128 << 20, MaxMetadataSize: 1 << 20, MaxUnpackedSize: 16 << 20}, ErrTooLarge, "data.tar.gz"},
		{"rpm decompression bomb", rpm(rpmWith(func(r *pkgtest.RPM) {
			r.Files = []pkgtest.File{{Name: "./zeros", Body: make([]byte, 64<<20), Mode: 0o644}, kubelet}
		})), &Limits{MaxFileSize: 128 << 20, MaxMetadataSize: 1 << 20, MaxUnpackedSize: 16 << 20}, ErrTooLarge, "payload"},
		{"ar long-name table", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember {
			return []pkgtest.ArMember{m[0], {Name: "//", Body: []byte("control.tar.gz-with-a-name-too-long-for-ar/\n")}, m[1], m[2]}
		}), nil, ErrCorrupt, "//"},
		{"ar long name reference", debMembers(goodDeb, func(m []pkgtest.ArMember) []pkgtest.ArMember { m[2].Name = "/0"; return m }), nil, ErrCorrupt, "/0"},
		{"rpm payload is not what the header says", edit(rpm(rpmWith(func(r *pkgtest.RPM) { r.Compression = "zstd" })), func(b []byte) []byte {
			i := bytes.Index(b, []byte("zstd\x00"))
			copy(b[i:], "gzip")
			return b
		}), nil, ErrDigest, "SHA-256"}, // the header is covered by its digest
	}
	dir := t.TempDir()
	refused := 0 // subtests run one after another
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.build()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, fmt.Sprintf("case%d.pkg", i))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l := DefaultLimits
			if tt.limits != nil {
				l = *tt.limits
			}
			var buf bytes.Buffer
			p, err := OpenLimits(path, l)
			if err == nil {
				_, err = p.Extract([]string{"usr/bin/kubelet"}, &buf)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf.Bytes(), kubeletBody) {
					t.Fatalf("extracted %d bytes, want %d", buf.Len(), len(kubeletBody))
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Path != path || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the package", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if p != nil {
				refusedOnDisk(t, p)
			}
			refused++
		})
	}
	t.Logf("hostile packages: %d crafted .deb and .rpm files refused with an error naming the package; %d well-formed ones extracted", refused, len(tests)-refused)
	testreport.Write("hostile-packages", fmt.Sprintf("hostile packages: %d crafted .deb and .rpm files refused, each with an error naming the package and the problem, nothing written, the previous target intact (%d well-formed variants extracted)",
		refused, len(tests)-refused)+"\n")
}

// refusedOnDisk checks that ExtractTo of a package that Extract refuses
// leaves the previous target as it was and nothing else behind.
func refusedOnDisk(t *testing.T, p *Package) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "opt/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "opt/bin/kubelet"), []byte("previous"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, _, err := p.ExtractTo(root, "opt/bin/kubelet", []string{"usr/bin/kubelet"}); err == nil {
		t.Fatal("ExtractTo accepted what Extract refused")
	}
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if got, _ := os.ReadFile(filepath.Join(dir, "opt/bin/kubelet")); string(got) != "previous" || len(files) != 1 {
		t.Errorf("after a refused extraction: target %q, files %v", got, files)
	}
}
