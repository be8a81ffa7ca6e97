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
// Packages are opened through an *os.Root (OpenIn), never by a host path,
// and refused at once when the path holds anything but a regular file (a
// FIFO does not block the run). Extraction reopens the file through the
// same root and makes sure it is the same file.
//
// Memory is bounded whatever the core count: decoders run with a fixed
// concurrency, and a payload whose LZMA dictionary or zstd window exceeds
// Limits.MaxWindow is refused. The xz data.tar of a deb, which dpkg-deb
// writes as independent blocks, is decoded by two goroutines out of order
// straight into an unlinked scratch file (the page cache holds decoded
// blocks, not the heap) and read back in order; see xzpar.go. A Package
// may be used by several goroutines at once.
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
	"path/filepath"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/xz"
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
	// MaxWindow caps the memory a compressed stream may make its decoder
	// hold: the LZMA/LZMA2 dictionary of xz and lzma, the zstd window. It
	// also caps the decoded size of an xz block decoded out of order
	// (larger ones are decoded in sequence), and so the scratch space.
	// Zero means 64 MiB, what xz -9 and zstd --long=26 use; dpkg and
	// rpm's defaults use 8 MiB.
	MaxWindow int64
	// Decoders, when set, bounds the payload decoders running at once
	// across every extraction whose Limits share it, and with them the
	// memory of a run that extracts several packages in parallel: each
	// decoder holds up to MaxWindow. Nil bounds them per extraction only
	// (two for a multi-block xz stream, else one).
	Decoders *DecoderSlots
}

// DecoderSlots is a count of decoders that may run at once, shared by the
// extractions that are given it. A slot keeps its xz decoder between
// uses, so its dictionary is allocated once per slot, not once per
// package: what the garbage collector would otherwise have to catch up
// with is most of a parallel bake's memory.
type DecoderSlots struct{ c chan *decoderSlot }

// NewDecoderSlots allows n (at least 1) decoders at once.
func NewDecoderSlots(n int) *DecoderSlots {
	d := &DecoderSlots{c: make(chan *decoderSlot, max(n, 1))}
	for range cap(d.c) {
		d.c <- &decoderSlot{}
	}
	return d
}

// acquire waits for a slot; a nil *DecoderSlots hands out a fresh one at
// once.
func (d *DecoderSlots) acquire() *decoderSlot {
	if d == nil {
		return &decoderSlot{}
	}
	return <-d.c
}

func (d *DecoderSlots) release(s *decoderSlot) {
	if d != nil {
		d.c <- s
	}
}

// decoderSlot holds the xz decoder of the last user of the slot.
type decoderSlot struct {
	xz      *xz.Reader
	dictMax uint32
}

// xzReader is an xz decoder of r with dictMax, the slot's own when it has
// one with the same limit (reset: same dictionary), else a new one.
func (s *decoderSlot) xzReader(r io.Reader, dictMax uint32) (*xz.Reader, error) {
	if s.xz != nil && s.dictMax == dictMax {
		if err := s.xz.Reset(r); err != nil {
			return nil, err
		}
		return s.xz, nil
	}
	zr, err := xz.NewReader(r, dictMax)
	if err != nil {
		return nil, err
	}
	s.xz, s.dictMax = zr, dictMax
	return zr, nil
}

// DefaultLimits fit any Kubernetes node binary with a wide margin (kubelet
// is ~100 MiB) while keeping a hostile package from exhausting memory.
var DefaultLimits = Limits{
	MaxFileSize:     1 << 30,
	MaxMetadataSize: 64 << 20,
	MaxUnpackedSize: 8 << 30,
	MaxWindow:       64 << 20,
}

func (l Limits) window() int64 {
	if l.MaxWindow > 0 {
		return l.MaxWindow
	}
	return 64 << 20
}

func (l Limits) unpacked() int64 {
	if l.MaxUnpackedSize > 0 {
		return l.MaxUnpackedSize
	}
	return 8 * l.MaxFileSize
}

// Package is what a package file says about itself.
type Package struct {
	// Path names the package in errors: the host path given to Open, or
	// "/" + the root-relative name given to OpenIn.
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

	limits  Limits
	root    *os.Root    // the package is reopened through it…
	hostDir string      // …or through a root opened on this directory (Open)…
	name    string      // …by this name
	stat    fs.FileInfo // to notice the file being replaced after Open
	deb     *debInfo
	rpm     *rpmInfo
}

// Entry is the file Extract wrote.
type Entry struct {
	Name string // as in the archive, e.g. "./usr/bin/kubelet"
	Size int64
	Mode fs.FileMode // permission bits the package declares
	// Digest is what the package declares for the file, "<algo>:<hex>"
	// ("sha256:…" for rpm, "md5:…" from a deb's md5sums), or "" when the
	// package declares none.
	Digest string
	// Checks names what verified the content, e.g. "sha256 file digest",
	// "md5sums", "zstd frame checksum", "xz CRC64", "gzip CRC32"; empty
	// when nothing did. A deb's md5sums is verified only when the data.tar
	// compression carries no check of its own over every byte: it is
	// unsigned, so it guards against the same accidents as that check,
	// and dpkg itself never reads it when unpacking.
	Checks []string
}

// Open reads the metadata of the package at the host path path with
// DefaultLimits. It is OpenIn on a root opened at the file's directory.
func Open(path string) (*Package, error) { return OpenLimits(path, DefaultLimits) }

// OpenLimits is Open with l.
func OpenLimits(path string, l Limits) (*Package, error) {
	dir := filepath.Dir(path)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening package: %w", err)
	}
	// Closed at once: a Package holds no descriptor, and reopen opens
	// the directory again.
	defer root.Close()
	p, err := openIn(root, filepath.Base(path), path, l)
	if err != nil {
		return nil, err
	}
	p.root, p.hostDir = nil, dir
	return p, nil
}

// OpenIn reads the metadata of the package name (slash-separated,
// relative to root) from the package itself (deb control file, rpm
// header), never from the file name; the format is recognised by its
// magic bytes. The file is opened through root, so a symbolic link that
// leaves root is refused, and without blocking: a FIFO, device or
// directory at name is an error naming it. Extract and ExtractTo reopen
// the file through root, which must stay open until they are done.
func OpenIn(root *os.Root, name string, l Limits) (*Package, error) {
	return openIn(root, name, "/"+strings.TrimPrefix(name, "/"), l)
}

func openIn(root *os.Root, name, display string, l Limits) (*Package, error) {
	f, err := rootfs.OpenRegular(root, name)
	if err != nil {
		if errors.Is(err, rootfs.ErrNotRegular) {
			return nil, &Error{Path: display, Kind: ErrCorrupt, Detail: "not a regular file", Err: err}
		}
		return nil, fmt.Errorf("opening package %s: %w", display, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening package %s: %w", display, err)
	}
	p := &Package{Path: display, limits: l, root: root, name: name, stat: st}
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
		return nil, &Error{Path: display, Kind: ErrCorrupt, Detail: "neither a deb (ar archive) nor an rpm: unknown magic bytes"}
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
	return p.extract(candidates, w, &extractOpts{scratch: hostScratch})
}

// ExtractTo extracts like Extract into dest (a slash path relative to
// root) with mode 0755, through rootfs.WriteChecked: dest is replaced only
// once every check passed, and a failure leaves neither dest nor a temp
// file behind.
func (p *Package) ExtractTo(root *os.Root, dest string, candidates []string) (Entry, rootfs.Result, error) {
	o := &extractOpts{scratch: func() (*os.File, error) { return rootScratch(root, dest) }}
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

// extractOpts lets ExtractTo take over work that WriteChecked already does.
type extractOpts struct {
	deferSHA256 bool   // leave a SHA-256 file digest to the caller…
	deferred    bool   // …which extract did,
	wantSHA256  string // expecting this hex digest
	// scratch makes the unlinked file a multi-block xz stream is decoded
	// into.
	scratch func() (*os.File, error)
}

// rootScratch is a scratch file beside dest, on the filesystem the
// content is written to anyway, unlinked at once: nothing of it outlives
// the extraction, not even after a crash.
func rootScratch(root *os.Root, dest string) (*os.File, error) {
	f, tmp, err := rootfs.CreateTemp(root, dest)
	if err != nil {
		return nil, err
	}
	if err := root.Remove(tmp); err != nil {
		f.Close()
		return nil, fmt.Errorf("removing scratch file %s: %w", tmp, err)
	}
	return f, nil
}

// hostScratch is the scratch file of Extract, which has no root.
func hostScratch() (*os.File, error) {
	f, err := os.CreateTemp("", rootfs.TempPrefix+"xz-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
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
		return p.extractDeb(f, want, w, o)
	case platform.RPM:
		return p.extractRPM(f, want, w, o)
	}
	return Entry{}, fmt.Errorf("extracting from %s: package was not opened with Open", p.Path)
}

// reopen opens the package again through the root it was opened in and
// makes sure it is the file Open read, so metadata and content cannot come
// from two different packages.
func (p *Package) reopen() (*os.File, error) {
	if p.stat == nil {
		return nil, fmt.Errorf("extracting from %s: package was not opened with Open", p.Path)
	}
	root := p.root
	if root == nil {
		r, err := os.OpenRoot(p.hostDir)
		if err != nil {
			return nil, fmt.Errorf("extracting from package: %w", err)
		}
		defer r.Close()
		root = r
	}
	f, err := rootfs.OpenRegular(root, p.name)
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

// payloadReader decodes a payload (deb data.tar, rpm cpio) of
// p.Compression from r, feeding every compressed byte to sum if it is not
// nil, and names the check the decoder verifies. A multi-block xz stream
// is decoded out of order into a scratch file from o, and sum then reads
// the compressed bytes in a pass of their own; drain finishes both.
func (p *Package) payloadReader(r *io.SectionReader, sum io.Writer, o *extractOpts) (*payload, string, error) {
	pl := &payload{}
	raw := io.Reader(r)
	if sum != nil {
		raw = io.TeeReader(r, sum)
	}
	if p.Compression == compXZ && o != nil && o.scratch != nil {
		dec, err := newParallelXZ(r, r.Size(), p.limits, o.scratch)
		if err != nil {
			return nil, "", err
		}
		if dec != nil {
			hdr := make([]byte, xzHeaderLen)
			r.ReadAt(hdr, 0)
			pl.ReadCloser = dec
			if sum != nil {
				pl.rest = newBufReader(io.TeeReader(io.NewSectionReader(r, 0, r.Size()), sum))
			}
			return pl, xzCheck(hdr), nil
		}
	}
	br := newBufReader(raw)
	slot := p.limits.Decoders.acquire()
	dec, check, err := decompress(p.Compression, br, p.limits, slot)
	if err != nil {
		p.limits.Decoders.release(slot)
		return nil, "", err
	}
	pl.ReadCloser, pl.slots, pl.slot = dec, p.limits.Decoders, slot
	if sum != nil {
		pl.rest = br
	}
	return pl, check, nil
}

// payload is a decoded payload and, in rest, what is left of the
// compressed bytes its digest must still see.
type payload struct {
	io.ReadCloser
	rest  io.Reader
	slots *DecoderSlots // slot is given back to it by Close
	slot  *decoderSlot
}

func (pl *payload) Close() error {
	err := pl.ReadCloser.Close()
	if pl.slot != nil {
		pl.slots.release(pl.slot)
	}
	return err
}

// drain reads the payload to its end, so the decoder checks its trailer
// (CRC, xz index), and then the rest of the compressed bytes, so a digest
// over them covers every one.
func (pl *payload) drain() error {
	if _, err := io.Copy(io.Discard, pl.ReadCloser); err != nil {
		return err
	}
	if pl.rest != nil {
		_, err := io.Copy(io.Discard, pl.rest)
		return err
	}
	return nil
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

// bufSize is the read size around every compressed stream (decoders make
// millions of tiny reads without it: 19.7 s instead of 3.2 s for a
// 100 MiB xz deb) and the chunk size of every copy. Larger buys nothing
// measurable and costs memory per decoder.
const bufSize = 256 << 10

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, bufSize) }
