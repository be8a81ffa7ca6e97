package pkgfile

import (
	"archive/tar"
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

type debInfo struct {
	dataName string // "data.tar.xz"
	dataOff  int64
	dataSize int64
	md5sums  map[string]string // clean path → lower-case hex
}

func (p *Package) openDeb(f *os.File, size int64) error {
	ar, err := newArReader(f, size)
	if err != nil {
		return p.errf(ErrCorrupt, "", err, "not a deb")
	}
	m, err := ar.next()
	if err != nil {
		return p.errf(ErrCorrupt, "", noEOF(err), "reading ar archive")
	}
	if m.name != "debian-binary" {
		return p.errf(ErrCorrupt, m.name, nil, "first member must be debian-binary")
	}
	if m.size > 64 {
		return p.errf(ErrCorrupt, m.name, nil, "%d bytes, a format version is a few", m.size)
	}
	ver := make([]byte, m.size)
	if _, err := f.ReadAt(ver, m.offset); err != nil {
		return p.errf(ErrCorrupt, m.name, noEOF(err), "reading")
	}
	if err := checkDebVersion(ver); err != nil {
		return p.errf(ErrUnsupported, m.name, nil, "%v", err)
	}
	var control arMember
	d := &debInfo{}
	for _, want := range []string{"control.tar", "data.tar"} {
		for {
			m, err = ar.next()
			if err == io.EOF {
				return p.errf(ErrCorrupt, "", nil, "missing %s member", want)
			}
			if err != nil {
				return p.errf(ErrCorrupt, "", err, "reading ar archive")
			}
			// deb(5): members between the required ones start with "_" and
			// are to be ignored (e.g. signatures).
			if !strings.HasPrefix(m.name, "_") {
				break
			}
		}
		if !strings.HasPrefix(m.name, want) {
			return p.errf(ErrCorrupt, m.name, nil, "unexpected member where %s* belongs", want)
		}
		if want == "control.tar" {
			control = m
		} else {
			d.dataName, d.dataOff, d.dataSize = m.name, m.offset, m.size
		}
	}
	// Members after data.tar are ignored, as deb(5) tells readers to.
	comp, err := debCompression(d.dataName, "data.tar")
	if err != nil {
		return p.errf(ErrUnsupported, d.dataName, err, "")
	}
	p.Compression = comp
	p.deb = d
	return p.readControl(f, control)
}

// checkDebVersion accepts "2.<minor>\n", the only format dpkg-deb writes
// since 1995.
func checkDebVersion(b []byte) error {
	s, ok := strings.CutSuffix(string(b), "\n")
	major, minor, ok2 := strings.Cut(s, ".")
	if !ok || !ok2 || major != "2" || minor == "" || strings.Trim(minor, "0123456789") != "" {
		return fmt.Errorf("format version %q, want 2.x", b)
	}
	return nil
}

func debCompression(member, base string) (string, error) {
	switch strings.TrimPrefix(member, base) {
	case "":
		return compNone, nil
	case ".gz":
		return compGzip, nil
	case ".xz":
		return compXZ, nil
	case ".zst":
		return compZstd, nil
	case ".bz2":
		return compBzip2, nil
	case ".lzma":
		return compLZMA, nil
	}
	return "", fmt.Errorf("unknown compression suffix")
}

func (p *Package) readControl(f *os.File, m arMember) error {
	comp, err := debCompression(m.name, "control.tar")
	if err != nil {
		return p.errf(ErrUnsupported, m.name, err, "")
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, m.offset, m.size), int(min(bufSize, max(m.size, 16))))
	slot := p.limits.Decoders.acquire()
	defer p.limits.Decoders.release(slot)
	dec, _, err := decompress(comp, br, p.limits, slot)
	if err != nil {
		return p.decodeErr(m.name, err)
	}
	defer dec.Close()
	tr := tar.NewReader(&capReader{r: dec, n: p.limits.MaxMetadataSize})
	var control, sums []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return p.readErr(m.name, err)
		}
		name, ok := cleanName(h.Name)
		if !ok {
			return p.errf(ErrUnsafe, m.name, nil, "entry name %q escapes the package root", h.Name)
		}
		var dst *[]byte
		switch name {
		case "control":
			dst = &control
		case "md5sums":
			dst = &sums
		default:
			continue
		}
		if *dst != nil {
			return p.errf(ErrCorrupt, m.name, nil, "duplicate %s", name)
		}
		if h.Typeflag != tar.TypeReg {
			return p.errf(ErrCorrupt, m.name, nil, "%s is not a regular file", name)
		}
		if *dst, err = io.ReadAll(tr); err != nil {
			return p.readErr(m.name, err)
		}
	}
	if control == nil {
		return p.errf(ErrCorrupt, m.name, nil, "no control file")
	}
	if err := p.parseControl(control); err != nil {
		return p.errf(ErrCorrupt, m.name, err, "control file")
	}
	if sums != nil {
		if p.deb.md5sums, err = parseMD5Sums(sums); err != nil {
			if errors.Is(err, errTooLarge) {
				return p.errf(ErrTooLarge, m.name, err, "md5sums")
			}
			return p.errf(ErrCorrupt, m.name, err, "md5sums")
		}
	}
	return nil
}

// decodeErr classifies an error met while setting up a decoder.
func (p *Package) decodeErr(member string, err error) error {
	if errors.Is(err, errTooLarge) {
		return p.errf(ErrTooLarge, member, nil, "%v", err)
	}
	return p.errf(ErrCorrupt, member, err, "")
}

// readErr classifies an error met while reading an archive member.
func (p *Package) readErr(member string, err error) error {
	if errors.Is(err, errTooLarge) {
		return p.errf(ErrTooLarge, member, nil, "%v", err)
	}
	return p.errf(ErrCorrupt, member, noEOF(err), "")
}

func (p *Package) parseControl(b []byte) error {
	fields := map[string]string{}
	var last string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(fields) > 0 {
				break // one paragraph only
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return fmt.Errorf("continuation line before any field")
			}
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			return fmt.Errorf("line %q is not a field", line)
		}
		last = strings.ToLower(k)
		if _, dup := fields[last]; dup {
			return fmt.Errorf("duplicate field %s", k)
		}
		fields[last] = strings.TrimSpace(v)
	}
	for _, k := range []string{"package", "version", "architecture"} {
		if fields[k] == "" {
			return fmt.Errorf("no %s field", k)
		}
	}
	p.Name = fields["package"]
	v, err := pkgversion.Parse(platform.Deb, fields["version"])
	if err != nil {
		return err
	}
	p.Version = v
	p.RawArch = fields["architecture"]
	p.Arch, _ = platform.ParseArch(p.RawArch)
	for _, k := range []string{"pre-depends", "depends"} {
		for d := range strings.SplitSeq(fields[k], ",") {
			if d = strings.Join(strings.Fields(d), " "); d != "" {
				p.Depends = append(p.Depends, d)
			}
		}
	}
	return nil
}

func parseMD5Sums(b []byte) (map[string]string, error) {
	sums := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		if len(line) < 34 || line[32] != ' ' {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		sum := strings.ToLower(line[:32])
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("malformed digest in line %q", line)
		}
		name, ok := cleanName(strings.TrimLeft(line[33:], " *"))
		if !ok || name == "." {
			return nil, fmt.Errorf("bad path in line %q", line)
		}
		if len(sums) >= maxFiles {
			return nil, fmt.Errorf("%w: more than %d files", errTooLarge, maxFiles)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("%s listed twice", name)
		}
		sums[name] = sum
	}
	return sums, nil
}

// debHit is what one scan of data.tar learnt about a candidate.
type debHit struct {
	count int
	hdr   tar.Header
}

// extractDeb scans data.tar once, writing the first candidate as soon as
// it shows up. Only when a later candidate is met first does it need a
// second scan, because an earlier candidate might still follow.
func (p *Package) extractDeb(f *os.File, want []string, w io.Writer, o *extractOpts) (Entry, error) {
	hits := make([]debHit, len(want))
	e, err := p.scanDeb(f, want, 0, hits, w, o)
	if err != nil {
		return Entry{}, err
	}
	best := -1
	for i := range hits {
		if hits[i].count > 0 {
			best = i
			break
		}
	}
	if best < 0 {
		return Entry{}, notFound(p, want)
	}
	if best == 0 {
		return e, nil
	}
	if err := p.checkHit(&hits[best]); err != nil {
		return Entry{}, err
	}
	return p.scanDeb(f, want, best, make([]debHit, len(want)), w, o)
}

func (p *Package) checkHit(h *debHit) error {
	if h.count > 1 {
		return p.errf(ErrUnsafe, h.hdr.Name, nil, "appears %d times in %s", h.count, p.deb.dataName)
	}
	switch h.hdr.Typeflag {
	case tar.TypeReg:
		return nil
	case tar.TypeSymlink:
		return &symlinkError{name: h.hdr.Name, target: h.hdr.Linkname}
	case tar.TypeLink:
		return p.errf(ErrUnsafe, h.hdr.Name, nil, "is a hard link to %q, not a regular file", h.hdr.Linkname)
	}
	return p.errf(ErrUnsafe, h.hdr.Name, nil, "is not a regular file (tar type %q)", h.hdr.Typeflag)
}

// scanDeb reads all of data.tar, counting the entries that match want in
// hits and writing the one of rank target to w.
func (p *Package) scanDeb(f *os.File, want []string, target int, hits []debHit, w io.Writer, o *extractOpts) (Entry, error) {
	d := p.deb
	dec, check, err := p.payloadReader(io.NewSectionReader(f, d.dataOff, d.dataSize), nil, o)
	if err != nil {
		return Entry{}, p.decodeErr(d.dataName, err)
	}
	defer dec.Close()
	tr := tar.NewReader(&capReader{r: dec, n: p.limits.unpacked()})
	var e Entry
	written := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Entry{}, p.readErr(d.dataName, err)
		}
		name, ok := cleanName(h.Name)
		if !ok {
			return Entry{}, p.errf(ErrUnsafe, d.dataName, nil, "entry name %q escapes the package root", h.Name)
		}
		r := rank(want, name)
		if r < 0 {
			continue
		}
		hit := &hits[r]
		hit.count++
		if hit.count == 1 {
			hit.hdr = *h
		}
		if r != target {
			continue
		}
		if err := p.checkHit(hit); err != nil {
			return Entry{}, err
		}
		if h.Size > p.limits.MaxFileSize {
			return Entry{}, p.errf(ErrTooLarge, h.Name, nil, "%d bytes, limit %d", h.Size, p.limits.MaxFileSize)
		}
		e = Entry{Name: h.Name, Size: h.Size, Mode: h.FileInfo().Mode().Perm()}
		if check != "" {
			e.Checks = append(e.Checks, check)
		}
		var sum *hashCheck
		if md5sum, ok := d.md5sums[name]; ok {
			e.Digest = "md5:" + md5sum
			// md5sums is unsigned: it guards against the accidents the
			// compression's own check already catches, at the cost of
			// hashing every byte again (a quarter of a zstd deb's CPU).
			if check == "" {
				sum = &hashCheck{h: md5.New(), want: md5sum, from: "md5sums"}
				e.Checks = append(e.Checks, "md5sums")
			}
		}
		if err := p.copyEntry(w, tr, h.Name, h.Size, sum, d.dataName); err != nil {
			return Entry{}, err
		}
		written = true
	}
	// The tar end marker can come before the end of the compressed stream;
	// reading on to EOF makes the decoder check its trailer (CRC, xz index).
	if err := dec.drain(); err != nil {
		return Entry{}, p.readErr(d.dataName, err)
	}
	if written {
		if err := p.checkHit(&hits[target]); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// hashCheck is a digest to verify while copying.
type hashCheck struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	want string // lower-case hex
	from string // where the package declares it
}

// errTooLarge is returned by capReader past its cap.
var errTooLarge = errors.New("uncompressed size exceeds the limit")

// capReader fails once more than n bytes have been read through it.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n < 0 {
		return k, fmt.Errorf("%w (limit exceeded)", errTooLarge)
	}
	return k, err
}
