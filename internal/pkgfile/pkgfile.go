// Package pkgfile reads Debian (.deb) and RPM (.rpm) package files without
// installing them: their metadata (name, version, architecture,
// dependencies) and the content of one regular file, streamed out of the
// compressed payload and checked against every digest the package carries.
//
// Packages are untrusted input. Nothing in here ever joins an entry name
// onto a directory on disk: the only file written is the one a caller names
// in ExtractTo. Entry names that escape the package root, sizes beyond
// Limits, duplicate or non-regular wanted entries, truncation anywhere and
// digest mismatches are errors (*Error) that name the package and the
// problem.
//
// A wanted entry that is a symbolic link is followed inside the package
// only (runc's usr/bin/runc → ../sbin/runc): an absolute target is read from
// the package root, and a target that climbs out of it, names nothing in the
// package, or starts a chain of more than eight links is refused. Hard links
// as the wanted entry are refused. Nothing a link says ever reaches the disk.
//
// Decoding runs beside hashing and writing on separate goroutines, and the
// xz data.tar of a deb, which dpkg-deb writes as independent blocks, is
// decoded block-parallel: that costs up to one decoded block (24 MiB with
// dpkg's defaults) of memory ahead of the reader. A Package may be used by
// several goroutines at once.
package pkgfile

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
)

// Limits bound what a package may make this package read or allocate.
type Limits struct {
	// MaxFileSize caps the size of any single entry in the payload, and so
	// the size of what Extract writes.
	MaxFileSize int64
	// MaxMetadataSize caps a deb's uncompressed control.tar and an RPM's
	// signature and main header, which are held in memory.
	MaxMetadataSize int64
	// MaxUnpackedSize caps the uncompressed bytes read from a payload, so
	// a decompression bomb costs bounded time. Zero means 8 × MaxFileSize.
	MaxUnpackedSize int64
}

// DefaultLimits fit any Kubernetes node binary with a wide margin (kubelet
// is ~100 MiB) while keeping a hostile package from exhausting memory.
var DefaultLimits = Limits{
	MaxFileSize:     1 << 30,
	MaxMetadataSize: 64 << 20,
	MaxUnpackedSize: 8 << 30,
}

func (l Limits) unpacked() int64 {
	if l.MaxUnpackedSize > 0 {
		return l.MaxUnpackedSize
	}
	return 8 * l.MaxFileSize
}

// Package is what a package file says about itself.
type Package struct {
	Path    string
	Format  platform.Format
	Name    string
	Version pkgversion.Version
	// Arch is the architecture the package is built for; empty when the
	// package names one reconcile does not know (see RawArch).
	Arch platform.Arch
	// RawArch is the architecture as the package spells it ("x86_64",
	// "aarch64", "amd64", "all", "noarch", "ppc64el", ...).
	RawArch string
	// Depends lists deb Pre-Depends then Depends, or rpm Requires without
	// rpmlib() and file dependencies, as written ("libc6 (>= 2.34)",
	// "glibc >= 2.34").
	Depends []string
	// Compression of the payload (deb data.tar, rpm cpio): "gzip", "xz",
	// "zstd", "bzip2", "lzma" or "none".
	Compression string

	limits Limits
	stat   fs.FileInfo // to notice the file being replaced after Open
	deb    *debInfo
	rpm    *rpmInfo
}

// Entry is the file Extract wrote.
type Entry struct {
	Name string // as in the archive, e.g. "./usr/bin/kubelet"
	Size int64
	Mode fs.FileMode // permission bits the package declares
	// Digest is what the package declares for the file, "<algo>:<hex>"
	// ("sha256:…" for rpm, "md5:…" from a deb's md5sums), or "" when the
	// package declares none. Extract has verified it.
	Digest string
}

// Open reads the metadata of the package at path with DefaultLimits.
func Open(path string) (*Package, error) { return OpenLimits(path, DefaultLimits) }

// OpenLimits reads the metadata of the package at path from the package
// itself (deb control file, rpm header), never from the file name. The
// format is recognised by its magic bytes.
func OpenLimits(path string, l Limits) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening package: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening package: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Path: path, Kind: ErrCorrupt, Detail: "not a regular file"}
	}
	p := &Package{Path: path, limits: l, stat: st}
	var magic [8]byte
	n, _ := f.ReadAt(magic[:], 0)
	switch {
	case n == 8 && string(magic[:]) == arMagic:
		p.Format = platform.Deb
		err = p.openDeb(f, st.Size())
	case n >= 4 && string(magic[:4]) == rpmLeadMagic:
		p.Format = platform.RPM
		err = p.openRPM(f, st.Size())
	default:
		return nil, &Error{Path: path, Kind: ErrCorrupt, Detail: "neither a deb (ar archive) nor an rpm: unknown magic bytes"}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Extract streams the first of candidates that the package holds into w
// and returns which entry it wrote. Candidates are slash paths below the
// package root such as "usr/bin/kubelet"; "./usr/bin/kubelet" and
// "/usr/bin/kubelet" in the archive are the same path.
//
// The whole payload is read, so that a duplicate of the entry, truncation
// or a bad checksum anywhere is noticed. On error w may have received part
// of the content; ExtractTo is the way to never see it.
func (p *Package) Extract(candidates []string, w io.Writer) (Entry, error) {
	return p.extract(candidates, w, nil)
}

// ExtractTo extracts like Extract into dest (a slash path relative to
// root) with mode 0755, through rootfs.WriteAtomic: dest is replaced only
// once every check passed, and a failure leaves neither dest nor a temp
// file behind.
func (p *Package) ExtractTo(root *os.Root, dest string, candidates []string) (Entry, rootfs.Result, error) {
	o := &extractOpts{}
	var e Entry
	var check func(rootfs.Result) error
	if p.rpm != nil && p.rpm.fileAlgo == crypto.SHA256 {
		// WriteChecked hashes with SHA-256 anyway; comparing its sum with
		// the rpm's file digest before dest is replaced saves hashing the
		// file a second time (~100 ms per 100 MiB).
		o.deferSHA256 = true
		check = func(res rootfs.Result) error {
			if o.deferred && res.SHA256 != o.wantSHA256 {
				return p.errf(ErrDigest, e.Name, nil, "content has digest %s, the header declares %s", res.SHA256, o.wantSHA256)
			}
			return nil
		}
	}
	res, err := rootfs.WriteChecked(root, dest, 0o755, func(w io.Writer) error {
		var err error
		e, err = p.extract(candidates, w, o)
		return err
	}, check)
	if err != nil {
		return Entry{}, rootfs.Result{}, err
	}
	return e, res, nil
}

// extractOpts lets ExtractTo take over work that WriteAtomic already does.
type extractOpts struct {
	deferSHA256 bool   // leave a SHA-256 file digest to the caller…
	deferred    bool   // …which extract did,
	wantSHA256  string // expecting this hex digest
}

func (p *Package) extract(candidates []string, w io.Writer, o *extractOpts) (Entry, error) {
	want, err := cleanCandidates(candidates)
	if err != nil {
		return Entry{}, fmt.Errorf("extracting from %s: %w", p.Path, err)
	}
	// A wanted entry that is a symbolic link (runc's usr/bin/runc →
	// ../sbin/runc) is followed inside the package, never onto the disk: an
	// absolute target is read from the package root, a target that climbs
	// out of it is refused, and so is a target the package does not hold.
	var link *symlinkError
	for hops := 0; ; hops++ {
		e, err := p.extractOnce(want, w, o)
		if link != nil && errors.Is(err, ErrNotFound) {
			return Entry{}, p.errf(ErrUnsafe, link.name, nil, "is a symbolic link to %q, which names no file in the package", link.target)
		}
		if !errors.As(err, &link) {
			return e, err
		}
		if hops == maxLinkHops {
			return Entry{}, p.errf(ErrUnsafe, link.name, nil, "more than %d symbolic links in a row", maxLinkHops)
		}
		next, ok := resolveLink(link.name, link.target)
		if !ok {
			return Entry{}, p.errf(ErrUnsafe, link.name, nil, "is a symbolic link to %q, which leaves the package", link.target)
		}
		want = []string{next}
	}
}

// maxLinkHops bounds a chain of symbolic links (and so a loop of them).
const maxLinkHops = 8

// symlinkError is a wanted entry that is a symbolic link: extract follows it.
type symlinkError struct{ name, target string }

func (e *symlinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link to %q", e.name, e.target)
}

// resolveLink is the package path a link named name pointing at target
// leads to, or false when it leaves the package root.
func resolveLink(name, target string) (string, bool) {
	clean, ok := cleanName(name)
	if !ok || target == "" {
		return "", false
	}
	var next string
	if path.IsAbs(target) {
		next = path.Clean(target)[1:]
	} else {
		next = path.Join(path.Dir(clean), target)
	}
	if next == "" || next == "." || next == ".." || strings.HasPrefix(next, "../") {
		return "", false
	}
	return next, true
}

func (p *Package) extractOnce(want []string, w io.Writer, o *extractOpts) (Entry, error) {
	f, err := p.reopen()
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	switch p.Format {
	case platform.Deb:
		return p.extractDeb(f, want, w)
	case platform.RPM:
		return p.extractRPM(f, want, w, o)
	}
	return Entry{}, fmt.Errorf("extracting from %s: package was not opened with Open", p.Path)
}

// reopen opens the package again and makes sure it is the file Open read,
// so metadata and content cannot come from two different packages.
func (p *Package) reopen() (*os.File, error) {
	if p.stat == nil {
		return nil, fmt.Errorf("extracting from %s: package was not opened with Open", p.Path)
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return nil, fmt.Errorf("extracting from package: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("extracting from package: %w", err)
	}
	if !os.SameFile(st, p.stat) || st.Size() != p.stat.Size() || !st.ModTime().Equal(p.stat.ModTime()) {
		f.Close()
		return nil, &Error{Path: p.Path, Kind: ErrCorrupt, Detail: "file changed since it was opened"}
	}
	return f, nil
}

func (p *Package) errf(kind error, entry string, cause error, format string, args ...any) *Error {
	return &Error{Path: p.Path, Entry: entry, Kind: kind, Detail: fmt.Sprintf(format, args...), Err: cause}
}

// cleanName maps an archive entry name to its slash path below the package
// root ("." for the root itself). ok is false when the name escapes the
// root: ".." components that climb out, or an absolute path left after the
// single "./" or "/" prefix that archivers write.
func cleanName(name string) (clean string, ok bool) {
	n, cut := strings.CutPrefix(name, "./")
	if !cut {
		n = strings.TrimPrefix(name, "/")
	}
	if n == "" {
		return ".", true
	}
	if n[0] == '/' || strings.IndexByte(n, 0) >= 0 {
		return "", false
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}

// cleanCandidates normalises the caller's paths the way entry names are.
func cleanCandidates(cands []string) ([]string, error) {
	if len(cands) == 0 {
		return nil, errors.New("no candidate paths given")
	}
	out := make([]string, len(cands))
	for i, c := range cands {
		n, ok := cleanName(c)
		if !ok || n == "." {
			return nil, fmt.Errorf("candidate path %q is not a path below the package root", c)
		}
		out[i] = n
	}
	return out, nil
}

// rank is the position of name among want, or -1.
func rank(want []string, name string) int {
	for i, w := range want {
		if w == name {
			return i
		}
	}
	return -1
}

func notFound(p *Package, want []string) *Error {
	return p.errf(ErrNotFound, "", nil, "none of %s", strings.Join(want, ", "))
}

// bufSize is the read size around every compressed stream: decoders make
// millions of tiny reads without it (FACTS: 19.7 s instead of 3.2 s for a
// 100 MiB xz deb).
const bufSize = 1 << 20

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, bufSize) }
