package pkgfile

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgfile/pkgtest"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

func TestOpenRealPackages(t *testing.T) {
	for _, f := range realFixtures(t) {
		t.Run(f.String(), func(t *testing.T) {
			p, err := Open(f.path)
			if err != nil {
				t.Fatal(err)
			}
			wantVer := map[platform.Format]string{platform.Deb: "1:1.34.10-1.1", platform.RPM: "1:1.34.10-1.azl3"}[f.format]
			wantDeps := map[platform.Format][]string{
				platform.Deb: {"dpkg (>= 1.17.5)", "iptables (>= 1.4.21)", "kubernetes-cni (>= 1.2.0) | cni-plugins"},
				platform.RPM: {"iptables >= 1.4", "kubernetes-cni"},
			}[f.format]
			if p.Format != f.format || p.Name != "kubelet" || p.Arch != f.arch || p.Compression != f.comp {
				t.Errorf("got format %s name %s arch %s compression %s", p.Format, p.Name, p.Arch, p.Compression)
			}
			if p.RawArch != f.arch.In(f.format) {
				t.Errorf("RawArch = %q, want %q", p.RawArch, f.arch.In(f.format))
			}
			if p.Version != pkgversion.MustParse(f.format, wantVer) {
				t.Errorf("Version = %+v, want %s", p.Version, wantVer)
			}
			if p.Version.Epoch != 1 {
				t.Errorf("epoch %d, want 1", p.Version.Epoch)
			}
			if !slices.Equal(p.Depends, wantDeps) {
				t.Errorf("Depends = %q, want %q", p.Depends, wantDeps)
			}
		})
	}
}

// TestOpenUsesMetadataNotFileName: a package renamed to lie keeps its
// own name, version and arch.
func TestOpenUsesMetadataNotFileName(t *testing.T) {
	f := fixtureFor(t, platform.RPM, "zstd", platform.ARM64)
	lie := filepath.Join(t.TempDir(), "kubectl_9.9.9_amd64.deb")
	b, _ := os.ReadFile(f.path)
	os.WriteFile(lie, b, 0o644)
	p, err := Open(lie)
	if err != nil {
		t.Fatal(err)
	}
	if p.Format != platform.RPM || p.Name != "kubelet" || p.Arch != platform.ARM64 || p.Version.Upstream != "1.34.10" {
		t.Errorf("got %s %s %s %s", p.Format, p.Name, p.Arch, p.Version.Upstream)
	}
}

func TestExtractMatchesDistroTools(t *testing.T) {
	for _, f := range realFixtures(t) {
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			p, err := Open(f.path)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				path string
				want []byte
			}{{"usr/bin/kubelet", f.kubelet}, {"usr/local/bin/helper", f.helper}} {
				var buf bytes.Buffer
				e, err := p.Extract([]string{c.path}, &buf)
				if err != nil {
					t.Fatal(err)
				}
				ref := referenceExtract(t, f, c.path)
				if !bytes.Equal(buf.Bytes(), ref) || !bytes.Equal(ref, c.want) {
					t.Fatalf("%s: extracted %d bytes, distro tool %d, built from %d; contents differ", c.path, buf.Len(), len(ref), len(c.want))
				}
				if e.Name != "./"+c.path || e.Size != int64(len(c.want)) || e.Mode != 0o755 {
					t.Errorf("entry %+v", e)
				}
				var wantDigest string
				switch {
				case f.format == platform.RPM:
					s := sha256.Sum256(c.want)
					wantDigest = "sha256:" + hex.EncodeToString(s[:])
				case f.comp != "none": // the none deb is built without md5sums
					s := md5.Sum(c.want)
					wantDigest = "md5:" + hex.EncodeToString(s[:])
				}
				if e.Digest != wantDigest {
					t.Errorf("Digest = %q, want %q", e.Digest, wantDigest)
				}
				if got, want := strings.Join(e.Checks, ", "), fixtureChecks(f); got != want {
					t.Errorf("Checks = %q, want %q", got, want)
				}
			}
		})
	}
}

func TestExtractCandidates(t *testing.T) {
	tests := []struct {
		name       string
		candidates []string
		want       string // "kubelet" or "helper"
		err        error
	}{
		{"plain", []string{"usr/bin/kubelet"}, "kubelet", nil},
		{"absolute", []string{"/usr/bin/kubelet"}, "kubelet", nil},
		{"dot slash", []string{"./usr/bin/kubelet"}, "kubelet", nil},
		{"fallback", []string{"usr/bin/missing", "usr/local/bin/helper"}, "helper", nil},
		// helper comes after kubelet in the archive but ranks first.
		{"priority over archive order", []string{"usr/local/bin/helper", "usr/bin/kubelet"}, "helper", nil},
		// kubelet is met before it is known that the first candidate is absent.
		{"later candidate met first", []string{"usr/local/bin/missing", "usr/bin/kubelet"}, "kubelet", nil},
		{"none present", []string{"usr/bin/missing", "usr/local/bin/missing"}, "", ErrNotFound},
		// kubelet-link → kubelet, followed inside the package.
		{"symlink followed", []string{"usr/bin/kubelet-link"}, "kubelet", nil},
		{"first present is a symlink", []string{"usr/bin/kubelet-link", "usr/local/bin/helper"}, "kubelet", nil},
	}
	for _, format := range []platform.Format{platform.Deb, platform.RPM} {
		f := fixtureFor(t, format, "zstd", platform.AMD64)
		p, err := Open(f.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(string(format)+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				_, err := p.Extract(tt.candidates, &buf)
				if tt.err != nil {
					if !errors.Is(err, tt.err) {
						t.Fatalf("err = %v, want %v", err, tt.err)
					}
					if !strings.Contains(err.Error(), f.path) {
						t.Errorf("error %q does not name the package", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := map[string][]byte{"kubelet": f.kubelet, "helper": f.helper}[tt.want]
				if !bytes.Equal(buf.Bytes(), want) {
					t.Errorf("got %d bytes, want %s (%d bytes)", buf.Len(), tt.want, len(want))
				}
			})
		}
	}
}

func TestExtractBadCandidates(t *testing.T) {
	f := fixtureFor(t, platform.Deb, "gzip", platform.AMD64)
	p, err := Open(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{nil, {"../etc/passwd"}, {"/"}, {"."}, {"usr/../../x"}} {
		if _, err := p.Extract(c, &bytes.Buffer{}); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("candidates %q: err = %v, want an invalid-argument error", c, err)
		}
	}
}

// filesUnder lists the non-directories below dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestExtractTo(t *testing.T) {
	for _, f := range realFixtures(t) {
		if f.arch != platform.AMD64 {
			continue
		}
		t.Run(f.String(), func(t *testing.T) {
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			p, err := Open(f.path)
			if err != nil {
				t.Fatal(err)
			}
			e, res, err := p.ExtractTo(root, "opt/bin/kubelet-1.34.10", []string{"usr/bin/kubelet"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "opt/bin/kubelet-1.34.10"))
			if err != nil || !bytes.Equal(got, f.kubelet) {
				t.Fatalf("content differs (%v)", err)
			}
			st, _ := os.Stat(filepath.Join(dir, "opt/bin/kubelet-1.34.10"))
			if st.Mode().Perm() != 0o755 {
				t.Errorf("mode %v", st.Mode())
			}
			s := sha256.Sum256(f.kubelet)
			if res.SHA256 != hex.EncodeToString(s[:]) || res.Size != int64(len(f.kubelet)) || e.Size != res.Size {
				t.Errorf("result %+v, entry %+v", res, e)
			}
			if files := filesUnder(t, dir); len(files) != 1 {
				t.Errorf("files left: %q", files)
			}
		})
	}
}

func TestExtractToFailureLeavesNothing(t *testing.T) {
	f := fixtureFor(t, platform.RPM, "gzip", platform.AMD64)
	good, _ := os.ReadFile(f.path)
	big := bytes.Repeat([]byte("0123456789abcdef"), (asyncMin+100)/16) // takes the async path
	badRPM, err := rpmWith(func(r *pkgtest.RPM) {
		r.Files = []pkgtest.File{{Name: "./usr/bin/kubelet", Body: big, Digest: strings.Repeat("ab", 32)}}
	}).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed: md5sums is then the check of the content.
	bad := withFiles(pkgtest.File{Name: "./usr/bin/kubelet", Body: big, Digest: strings.Repeat("ab", 16)})
	bad.Compression = "none"
	badDeb, err := bad.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		pkg  []byte
		want error
	}{
		"rpm file digest": {badRPM, ErrDigest},
		"deb md5sum":      {badDeb, ErrDigest},
		"not found":       {good, ErrNotFound},
		// The last bytes are the gzip trailer: the whole file is written
		// before the CRC fails.
		"bad gzip trailer": {flip(good, len(good)-6), ErrCorrupt},
		"truncated":        {good[:len(good)-100], ErrCorrupt},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pkg.rpm")
			os.WriteFile(path, c.pkg, 0o644)
			rootDir := filepath.Join(dir, "root")
			os.Mkdir(rootDir, 0o755)
			root, _ := os.OpenRoot(rootDir)
			defer root.Close()
			cands := []string{"usr/bin/kubelet"}
			if c.want == ErrNotFound {
				cands = []string{"usr/bin/nothere"}
			}
			// An existing target keeps its content.
			os.MkdirAll(filepath.Join(rootDir, "opt/bin"), 0o755)
			os.WriteFile(filepath.Join(rootDir, "opt/bin/kubelet"), []byte("old"), 0o755)
			var err error
			var p *Package
			if p, err = Open(path); err == nil {
				_, _, err = p.ExtractTo(root, "opt/bin/kubelet", cands)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			files := filesUnder(t, rootDir)
			if len(files) != 1 {
				t.Errorf("files left: %q", files)
			}
			if b, _ := os.ReadFile(filepath.Join(rootDir, "opt/bin/kubelet")); string(b) != "old" {
				t.Errorf("target changed to %q", b)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := slices.Clone(b)
	c[i] ^= 0x55
	return c
}

// TestTruncatedAnywhere cuts real packages at many points: every cut
// must fail in Open or Extract, never yield content.
func TestTruncatedAnywhere(t *testing.T) {
	for _, f := range realFixtures(t) {
		if f.arch != platform.AMD64 {
			continue
		}
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			b, _ := os.ReadFile(f.path)
			dir := t.TempDir()
			step := max(1, len(b)/150)
			for n := 0; n < len(b); n += step {
				for _, cut := range []int{n, n + 1} {
					if cut >= len(b) {
						continue
					}
					path := filepath.Join(dir, "p")
					os.WriteFile(path, b[:cut], 0o644)
					p, err := Open(path)
					if err == nil {
						_, err = p.Extract([]string{"usr/bin/kubelet"}, &bytes.Buffer{})
					}
					if err == nil {
						t.Fatalf("cut at %d of %d: no error", cut, len(b))
					}
					var pe *Error
					if !errors.As(err, &pe) || pe.Path != path {
						t.Fatalf("cut at %d: %v is not an *Error naming the package", cut, err)
					}
				}
			}
		})
	}
}

// TestCorruptionNeverYieldsWrongContent flips bytes of real packages:
// Open and Extract must not panic, and when they succeed the content must
// be the right one, because every byte is covered by a checksum or digest.
func TestCorruptionNeverYieldsWrongContent(t *testing.T) {
	for _, f := range realFixtures(t) {
		if f.arch != platform.AMD64 || (f.format == platform.Deb && f.comp == "none") {
			continue // the none deb has no md5sums: nothing covers its content
		}
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			b, _ := os.ReadFile(f.path)
			dir := t.TempDir()
			step := max(1, len(b)/200)
			for i := 0; i < len(b); i += step {
				path := filepath.Join(dir, "p")
				os.WriteFile(path, flip(b, i), 0o644)
				p, err := Open(path)
				if err != nil {
					continue
				}
				var buf bytes.Buffer
				if _, err := p.Extract([]string{"usr/bin/kubelet"}, &buf); err == nil && !bytes.Equal(buf.Bytes(), f.kubelet) {
					t.Fatalf("flip at %d: wrong content extracted without error", i)
				}
			}
		})
	}
}

func TestPackageReplacedAfterOpen(t *testing.T) {
	a := fixtureFor(t, platform.Deb, "gzip", platform.AMD64)
	b := fixtureFor(t, platform.Deb, "gzip", platform.ARM64)
	path := filepath.Join(t.TempDir(), "k.deb")
	ab, _ := os.ReadFile(a.path)
	os.WriteFile(path, ab, 0o644)
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	bb, _ := os.ReadFile(b.path)
	os.WriteFile(path+".new", bb, 0o644)
	os.Rename(path+".new", path)
	if _, err := p.Extract([]string{"usr/bin/kubelet"}, &bytes.Buffer{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("err = %v, want a changed-since-open error", err)
	}
}

func TestNotAPackage(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty": "", "text": "hello world, not a package", "short ar": "!<arch>"} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(body), 0o644)
		if _, err := Open(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
		t.Errorf("directory: err = %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: err = %v", err)
	}
}

type failWriter struct{ after int64 }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= int64(len(p)); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestLargeEntries covers the path where writing runs on its own
// goroutine: content, ExtractTo, and a destination that fails.
func TestLargeEntries(t *testing.T) {
	big := randomBytes(7, asyncMin*2+12345)
	file := pkgtest.File{Name: "./usr/bin/kubelet", Body: big}
	dir := t.TempDir()
	for _, comp := range []string{"gzip", "zstd", "none"} {
		debBytes, err := withFiles(file, otherFile).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if comp != "gzip" {
			d := withFiles(file, otherFile)
			d.Compression = comp
			debBytes, _ = d.Bytes()
		}
		rpmBytes, err := rpmWith(func(r *pkgtest.RPM) { r.Files = []pkgtest.File{file, otherFile}; r.Compression = comp }).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		for kind, b := range map[string][]byte{"deb": debBytes, "rpm": rpmBytes} {
			t.Run(kind+"-"+comp, func(t *testing.T) {
				path := filepath.Join(dir, kind+comp)
				os.WriteFile(path, b, 0o644)
				p, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if _, err := p.Extract([]string{"usr/bin/kubelet"}, &buf); err != nil || !bytes.Equal(buf.Bytes(), big) {
					t.Fatalf("Extract: %v, %d bytes", err, buf.Len())
				}
				rootDir := t.TempDir()
				root, _ := os.OpenRoot(rootDir)
				defer root.Close()
				if _, res, err := p.ExtractTo(root, "opt/bin/kubelet", []string{"usr/bin/kubelet"}); err != nil || res.Size != int64(len(big)) {
					t.Fatalf("ExtractTo: %v %+v", err, res)
				}
				if got, _ := os.ReadFile(filepath.Join(rootDir, "opt/bin/kubelet")); !bytes.Equal(got, big) {
					t.Fatal("ExtractTo wrote other content")
				}
				if files := filesUnder(t, rootDir); len(files) != 1 {
					t.Errorf("files left: %q", files)
				}
				_, err = p.Extract([]string{"usr/bin/kubelet"}, &failWriter{after: 3 << 20})
				if err == nil || !strings.Contains(err.Error(), "disk full") || errors.Is(err, ErrCorrupt) {
					t.Fatalf("failing writer: err = %v, want a write error that does not blame the package", err)
				}
			})
		}
	}
}

// fixtureChecks is what verifies the content of a real fixture: the
// compression's own check where it has one (a deb's md5sums only where it
// has not), and for rpm the header's file digest and payload digest too.
// rpmbuild writes zstd frames without a checksum, dpkg-deb with one.
func fixtureChecks(f fixture) string {
	comp := map[string]string{"gzip": "gzip CRC32", "bzip2": "bzip2 CRC32", "xz": "xz CRC64", "zstd": "zstd frame checksum"}[f.comp]
	if f.format == platform.Deb {
		return comp // the none deb has no md5sums
	}
	if f.comp == "xz" {
		comp = "xz SHA-256"
	} else if f.comp == "zstd" {
		comp = ""
	}
	return strings.Join(slices.DeleteFunc([]string{"sha256 file digest", comp, "sha256 payload digest"}, func(s string) bool { return s == "" }), ", ")
}
