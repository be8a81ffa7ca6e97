package pkgfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// Tarball is a tar archive that carries a binary outside of any package
// (kubernetes-node-linux-amd64.tar.gz, the CNI plugins' .tgz): plain, or
// compressed with gzip (several members allowed), zstd, xz or bzip2, told
// apart by their magic bytes, never by the file name.
//
// A tarball is untrusted input under the same rules as a package: every
// entry name must stay below the archive root, the wanted entry must occur
// once, links are followed inside the archive only, sizes are bounded by
// Limits, and the whole archive is read to its end so that truncation or a
// bad checksum anywhere is an error. A Tarball may be used by several
// goroutines at once.
type Tarball struct {
	// Path names the file in messages: the name OpenTarball was given,
	// as an absolute path below the root ("/opt/kubelet/downloads/…").
	Path string
	// Compression is "gzip", "zstd", "xz", "bzip2" or "none".
	Compression string

	root   *os.Root
	name   string
	limits Limits
	stat   fs.FileInfo
}

// OpenTarball checks that name (slash-separated, relative to root) is a
// regular file that starts like a tar archive or one of the compressors
// above. The content is read by Extract and ExtractTo.
func OpenTarball(root *os.Root, name string, l Limits) (*Tarball, error) {
	t := &Tarball{Path: "/" + name, root: root, name: name, limits: l}
	f, err := rootfs.OpenRegular(root, name)
	if err != nil {
		return nil, fmt.Errorf("opening tarball: %w", err)
	}
	defer f.Close()
	if t.stat, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("opening tarball: %w", err)
	}
	var head [tarBlock]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("opening tarball %s: %w", t.Path, err)
	}
	if t.Compression = sniffCompression(head[:n]); t.Compression == "" {
		return nil, t.errf(ErrCorrupt, "", nil, "neither a tar archive nor gzip, zstd, xz or bzip2 data: unknown magic bytes")
	}
	return t, nil
}

// tarBlock is the size of a tar header block.
const tarBlock = 512

// sniffCompression names the compressor whose magic bytes start head,
// "none" for a tar header (POSIX ustar and GNU tar both write "ustar" at
// offset 257), or "" for anything else.
func sniffCompression(head []byte) string {
	for _, comp := range []string{compGzip, compZstd, compXZ, compBzip2} {
		if bytes.HasPrefix(head, compMagic[comp]) {
			return comp
		}
	}
	if len(head) == tarBlock && bytes.Equal(head[257:262], []byte("ustar")) {
		return compNone
	}
	return ""
}

// Extract streams the entry member (a slash path below the archive root
// such as "kubernetes/node/bin/kubelet"; "./" and "/" prefixes in the
// archive name the same path) into w and returns the entry it wrote. A
// symbolic or hard link as member is followed inside the archive.
//
// On error w may have received part of the content; ExtractTo is the way
// to never see it.
func (t *Tarball) Extract(member string, w io.Writer) (Entry, error) {
	want, ok := cleanName(member)
	if !ok || want == "." {
		return Entry{}, fmt.Errorf("extracting from %s: path %q is not a path below the archive root", t.Path, member)
	}
	var prev *tar.Header // the link that led to want
	for hops := 0; ; hops++ {
		e, link, err := t.scan(want, w)
		if prev != nil && errors.Is(err, ErrNotFound) {
			return Entry{}, t.errf(ErrUnsafe, prev.Name, nil, "is a link to %q, which names no file in the archive", prev.Linkname)
		}
		if err != nil || link == nil {
			return e, err
		}
		if hops == maxLinkHops {
			return Entry{}, t.errf(ErrUnsafe, link.Name, nil, "more than %d links in a row", maxLinkHops)
		}
		if want, ok = linkTarget(link); !ok {
			return Entry{}, t.errf(ErrUnsafe, link.Name, nil, "is a link to %q, which leaves the archive", link.Linkname)
		}
		prev = link
	}
}

// scan reads the whole archive once and writes the entry want to w when it
// is a regular file. When it is a link, scan returns its header instead,
// for Extract to follow: the target may come later in the archive.
func (t *Tarball) scan(want string, w io.Writer) (Entry, *tar.Header, error) {
	f, err := t.reopen()
	if err != nil {
		return Entry{}, nil, err
	}
	defer f.Close()
	slot := t.limits.Decoders.acquire()
	defer t.limits.Decoders.release(slot)
	dec, _, err := decompress(t.Compression, newBufReader(f), t.limits, slot)
	if err != nil {
		return Entry{}, nil, t.errf(ErrCorrupt, "", err, "")
	}
	defer dec.Close()
	// The cap covers everything decompressed, including what follows the
	// tar end marker, so a bomb hidden there costs bounded time too.
	cr := &capReader{r: dec, n: t.limits.unpacked()}
	tr := tar.NewReader(cr)
	var (
		e     Entry
		link  *tar.Header
		found bool
	)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		// Names that are not local come back with ErrInsecurePath under
		// GODEBUG=tarinsecurepath=0; cleanName below decides either way.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && h != nil) {
			return Entry{}, nil, t.readErr(err)
		}
		name, ok := cleanName(h.Name)
		if !ok {
			return Entry{}, nil, t.errf(ErrUnsafe, h.Name, nil, "entry name escapes the archive root")
		}
		if name != want {
			continue
		}
		if found {
			return Entry{}, nil, t.errf(ErrUnsafe, h.Name, nil, "%s appears more than once in the archive", want)
		}
		found = true
		switch h.Typeflag {
		case tar.TypeReg:
		case tar.TypeSymlink, tar.TypeLink:
			hc := *h
			link = &hc
			continue
		default:
			return Entry{}, nil, t.errf(ErrUnsafe, h.Name, nil, "is not a regular file (tar type %q)", h.Typeflag)
		}
		if h.Size > t.limits.MaxFileSize {
			return Entry{}, nil, t.errf(ErrTooLarge, h.Name, nil, "%d bytes, limit %d", h.Size, t.limits.MaxFileSize)
		}
		e = Entry{Name: h.Name, Size: h.Size, Mode: h.FileInfo().Mode().Perm()}
		if err := t.copyEntry(w, tr, h); err != nil {
			return Entry{}, nil, err
		}
	}
	// The tar end marker can come before the end of the compressed stream;
	// reading on to EOF makes the decoder check its trailer (gzip CRC and
	// length of every member, xz index, zstd checksum).
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return Entry{}, nil, t.readErr(err)
	}
	if !found {
		return Entry{}, nil, t.errf(ErrNotFound, "", nil, "no %s in the archive", want)
	}
	return e, link, nil
}

func (t *Tarball) copyEntry(w io.Writer, r io.Reader, h *tar.Header) error {
	var n int64
	var rerr, werr error
	if h.Size >= asyncMin {
		n, rerr, werr = copyAsync(r, h.Size, w)
	} else {
		n, rerr, werr = copySync(w, r, h.Size)
	}
	if werr != nil {
		return fmt.Errorf("writing %s from %s: %w", h.Name, t.Path, werr)
	}
	if errors.Is(rerr, errTooLarge) {
		return t.errf(ErrTooLarge, h.Name, nil, "%v", rerr)
	}
	if rerr != nil {
		return t.errf(ErrCorrupt, h.Name, noEOF(rerr), "%d of %d declared bytes read", n, h.Size)
	}
	return nil
}

// reopen opens the tarball again and makes sure it is the file that
// OpenTarball checked.
func (t *Tarball) reopen() (*os.File, error) {
	if t.stat == nil {
		return nil, fmt.Errorf("extracting from %s: tarball was not opened with OpenTarball", t.Path)
	}
	f, err := rootfs.OpenRegular(t.root, t.name)
	if err != nil {
		return nil, fmt.Errorf("extracting from tarball: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("extracting from tarball: %w", err)
	}
	if !os.SameFile(st, t.stat) || st.Size() != t.stat.Size() || !st.ModTime().Equal(t.stat.ModTime()) {
		f.Close()
		return nil, t.errf(ErrCorrupt, "", nil, "file changed since it was opened")
	}
	return f, nil
}

func (t *Tarball) readErr(err error) error {
	if errors.Is(err, errTooLarge) {
		return t.errf(ErrTooLarge, "", nil, "%v", err)
	}
	return t.errf(ErrCorrupt, "", noEOF(err), "")
}

func (t *Tarball) errf(kind error, entry string, cause error, format string, args ...any) *Error {
	return &Error{Path: t.Path, Entry: entry, Kind: kind, Detail: fmt.Sprintf(format, args...), Err: cause}
}

// ExtractTo extracts like Extract into dest (a slash path relative to
// root) with mode 0755, through rootfs.WriteAtomic: dest is replaced only
// once the whole archive has been read and found sound, and a failure
// leaves neither dest nor a temp file behind.
func (t *Tarball) ExtractTo(root *os.Root, dest, member string) (Entry, rootfs.Result, error) {
	var e Entry
	res, err := rootfs.WriteAtomic(root, dest, 0o755, func(w io.Writer) error {
		var err error
		e, err = t.Extract(member, w)
		return err
	})
	if err != nil {
		return Entry{}, rootfs.Result{}, err
	}
	return e, res, nil
}

// linkTarget is the archive path a symbolic or hard link leads to. A
// symbolic link is relative to its own directory; a hard link names an
// earlier entry from the archive root, as tar writes it.
func linkTarget(h *tar.Header) (string, bool) {
	if h.Typeflag == tar.TypeSymlink {
		return resolveLink(h.Name, h.Linkname)
	}
	n, ok := cleanName(h.Linkname)
	return n, ok && n != "."
}
