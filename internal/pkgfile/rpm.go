package pkgfile

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// The RPM header is parsed here rather than with go-rpmutils' ReadHeader:
// that one slices its data store with offsets straight from the file and
// panics on a hostile package, and sizes its allocations from the file
// before any check. This parser checks every index entry against the store
// and Limits.MaxMetadataSize before use. Layout: rpm's doc/manual/format.

const (
	rpmLeadMagic   = "\xed\xab\xee\xdb"
	rpmLeadLen     = 96
	rpmHeaderMagic = "\x8e\xad\xe8\x01"
)

// Header data types.
const (
	rpmNull = iota
	rpmChar
	rpmInt8
	rpmInt16
	rpmInt32
	rpmInt64
	rpmString
	rpmBin
	rpmStringArray
	rpmI18NString
)

// Tags used here. Signature header tags share numbers with main header
// tags; which header a tag is read from decides its meaning.
const (
	sigSize     = 1000 // header + payload bytes
	sigLongSize = 270
	sigSHA1     = 269 // hex SHA-1 of the main header
	sigSHA256   = 273 // hex SHA-256 of the main header

	tagName              = 1000
	tagVersion           = 1001
	tagRelease           = 1002
	tagEpoch             = 1003
	tagArch              = 1022
	tagOldFilenames      = 1027
	tagFileSizes         = 1028
	tagFileModes         = 1030
	tagFileDigests       = 1035
	tagFileLinkTos       = 1036
	tagFileFlags         = 1037
	tagRequireFlags      = 1048
	tagRequireName       = 1049
	tagRequireVersion    = 1050
	tagDirIndexes        = 1116
	tagBasenames         = 1117
	tagDirnames          = 1118
	tagPayloadFormat     = 1124
	tagPayloadCompressor = 1125
	tagLongFileSizes     = 5008
	tagFileDigestAlgo    = 5011
	tagPayloadDigest     = 5092
	tagPayloadDigestAlgo = 5093

	fileGhost = 1 << 6 // RPMFILE_GHOST: listed, but not in the payload

	sIFMT  = 0o170000
	sIFREG = 0o100000
	sIFLNK = 0o120000
)

// rpm's PGPHASHALGO numbers, used by FILEDIGESTALGO and PAYLOADDIGESTALGO.
var rpmHashes = map[uint64]struct {
	name string
	h    crypto.Hash
}{
	1:  {"md5", crypto.MD5},
	2:  {"sha1", crypto.SHA1},
	8:  {"sha256", crypto.SHA256},
	9:  {"sha384", crypto.SHA384},
	10: {"sha512", crypto.SHA512},
	11: {"sha224", crypto.SHA224},
}

func newHash(h crypto.Hash) hash.Hash {
	// Named constructors rather than h.New(), so the linker keeps them
	// without registering every hash in the binary.
	switch h {
	case crypto.MD5:
		return md5.New()
	case crypto.SHA1:
		return sha1.New()
	case crypto.SHA256:
		return sha256.New()
	case crypto.SHA224:
		return sha256.New224()
	case crypto.SHA384:
		return sha512.New384()
	case crypto.SHA512:
		return sha512.New()
	}
	return nil
}

// maxTagCount and maxFiles bound what a header within MaxMetadataSize can
// make Open allocate: a 64 MiB store of NULs would otherwise be 64 M empty
// strings (1 GiB of string headers). The largest real packages list ~100 k
// files.
const (
	maxTagCount = 1 << 20
	maxFiles    = 1 << 18
)

type rpmTag struct{ typ, off, count uint32 }

type rpmHeader struct {
	raw   []byte // intro, index and store: what the signature hashes cover
	store []byte
	tags  map[uint32]rpmTag
}

type rpmFile struct {
	name   string // as in the header, "/usr/bin/kubelet"
	clean  string // "usr/bin/kubelet"
	size   int64
	mode   uint32
	digest string // lower-case hex, "" when none
	link   string
	flags  uint64
}

type rpmInfo struct {
	payloadOff      int64
	payloadAlgo     crypto.Hash
	payloadAlgoName string
	payloadDigest   string // hex, "" when the package declares none
	fileAlgo        crypto.Hash
	fileAlgoName    string
	files           []rpmFile
}

// readRPMHeader reads the header structure at off and checks every index
// entry against its store.
func readRPMHeader(f io.ReaderAt, off, fileSize, limit int64) (*rpmHeader, error) {
	var intro [16]byte
	if off+16 > fileSize {
		return nil, fmt.Errorf("truncated at offset %d: %w", off, io.ErrUnexpectedEOF)
	}
	if _, err := f.ReadAt(intro[:], off); err != nil {
		return nil, noEOF(err)
	}
	if string(intro[:4]) != rpmHeaderMagic {
		return nil, fmt.Errorf("bad header magic % x at offset %d", intro[:4], off)
	}
	nindex := int64(binary.BigEndian.Uint32(intro[8:]))
	hsize := int64(binary.BigEndian.Uint32(intro[12:]))
	total := 16 + 16*nindex + hsize
	if total > limit {
		return nil, fmt.Errorf("%w: header of %d bytes, limit %d", errTooLarge, total, limit)
	}
	if off+total > fileSize {
		return nil, fmt.Errorf("header of %d bytes at offset %d runs past the end of the file: %w", total, off, io.ErrUnexpectedEOF)
	}
	raw := make([]byte, total)
	if _, err := f.ReadAt(raw, off); err != nil {
		return nil, noEOF(err)
	}
	h := &rpmHeader{raw: raw, store: raw[16+16*nindex:], tags: make(map[uint32]rpmTag, nindex)}
	for i := range nindex {
		e := raw[16+16*i:]
		tag := binary.BigEndian.Uint32(e)
		t := rpmTag{binary.BigEndian.Uint32(e[4:]), binary.BigEndian.Uint32(e[8:]), binary.BigEndian.Uint32(e[12:])}
		if err := h.check(t); err != nil {
			return nil, fmt.Errorf("tag %d: %w", tag, err)
		}
		if _, dup := h.tags[tag]; dup {
			return nil, fmt.Errorf("tag %d appears twice", tag)
		}
		h.tags[tag] = t
	}
	return h, nil
}

func (h *rpmHeader) check(t rpmTag) error {
	size := uint64(len(h.store))
	off := uint64(t.off)
	if t.typ == rpmNull {
		return nil
	}
	if t.count > maxTagCount {
		return fmt.Errorf("%w: %d values, limit %d", errTooLarge, t.count, maxTagCount)
	}
	if t.count == 0 || off >= size {
		return fmt.Errorf("count %d, offset %d outside the %d-byte store", t.count, t.off, size)
	}
	var width uint64
	switch t.typ {
	case rpmChar, rpmInt8, rpmBin:
		width = 1
	case rpmInt16:
		width = 2
	case rpmInt32:
		width = 4
	case rpmInt64:
		width = 8
	case rpmString, rpmStringArray, rpmI18NString:
		if t.typ == rpmString && t.count != 1 {
			return fmt.Errorf("string with count %d", t.count)
		}
		if uint64(t.count) > size-off {
			return fmt.Errorf("%d strings cannot fit in %d bytes", t.count, size-off)
		}
		p := off
		for range t.count {
			i := bytes.IndexByte(h.store[p:], 0)
			if i < 0 {
				return fmt.Errorf("unterminated string")
			}
			p += uint64(i) + 1
		}
		return nil
	default:
		return fmt.Errorf("unknown data type %d", t.typ)
	}
	if uint64(t.count)*width > size-off {
		return fmt.Errorf("%d values of %d bytes at offset %d overrun the %d-byte store", t.count, width, off, size)
	}
	return nil
}

func (h *rpmHeader) strs(tag uint32) []string {
	t, ok := h.tags[tag]
	if !ok || (t.typ != rpmString && t.typ != rpmStringArray && t.typ != rpmI18NString) {
		return nil
	}
	out := make([]string, 0, t.count)
	p := t.off
	for range t.count {
		i := uint32(bytes.IndexByte(h.store[p:], 0))
		out = append(out, string(h.store[p:p+i]))
		p += i + 1
	}
	return out
}

func (h *rpmHeader) str(tag uint32) string {
	if s := h.strs(tag); len(s) > 0 {
		return s[0]
	}
	return ""
}

func (h *rpmHeader) ints(tag uint32) []uint64 {
	t, ok := h.tags[tag]
	// check() bounds only the types it knows the width of: a NULL-typed
	// tag's offset is unchecked, so it must not be sliced (a fuzzed header
	// with a NULL-typed size tag panicked here).
	if !ok || t.typ != rpmChar && t.typ != rpmInt8 && t.typ != rpmInt16 && t.typ != rpmInt32 && t.typ != rpmInt64 {
		return nil
	}
	out := make([]uint64, 0, t.count)
	b := h.store[t.off:]
	for i := range uint32(t.count) {
		switch t.typ {
		case rpmChar, rpmInt8:
			out = append(out, uint64(b[i]))
		case rpmInt16:
			out = append(out, uint64(binary.BigEndian.Uint16(b[2*i:])))
		case rpmInt32:
			out = append(out, uint64(binary.BigEndian.Uint32(b[4*i:])))
		case rpmInt64:
			out = append(out, binary.BigEndian.Uint64(b[8*i:]))
		default:
			return nil
		}
	}
	return out
}

func (h *rpmHeader) int1(tag uint32) (uint64, bool) {
	if v := h.ints(tag); len(v) == 1 {
		return v[0], true
	}
	return 0, false
}

func (p *Package) openRPM(f *os.File, size int64) error {
	var lead [rpmLeadLen]byte
	if _, err := f.ReadAt(lead[:], 0); err != nil {
		return p.errf(ErrCorrupt, "lead", noEOF(err), "")
	}
	if lead[4] != 3 && lead[4] != 4 {
		return p.errf(ErrUnsupported, "lead", nil, "rpm format version %d", lead[4])
	}
	hdrErr := func(which string, err error) error {
		if errors.Is(err, errTooLarge) {
			return p.errf(ErrTooLarge, which, err, "")
		}
		return p.errf(ErrCorrupt, which, err, "")
	}
	sig, err := readRPMHeader(f, rpmLeadLen, size, p.limits.MaxMetadataSize)
	if err != nil {
		return hdrErr("signature header", err)
	}
	// The signature header is padded to a multiple of 8 bytes.
	hdrOff := rpmLeadLen + int64(len(sig.raw))
	hdrOff += (8 - hdrOff%8) % 8
	hdr, err := readRPMHeader(f, hdrOff, size, p.limits.MaxMetadataSize)
	if err != nil {
		return hdrErr("header", err)
	}
	r := &rpmInfo{payloadOff: hdrOff + int64(len(hdr.raw))}

	// What the signature header says about the rest, checked before any of
	// it is believed.
	n, ok := sig.int1(sigLongSize)
	if !ok {
		n, ok = sig.int1(sigSize)
	}
	if ok {
		if got := size - hdrOff; uint64(got) != n {
			return p.errf(ErrCorrupt, "", nil, "header and payload are %d bytes, the signature header says %d (truncated?)", got, n)
		}
	}
	if want := sig.str(sigSHA256); want != "" {
		sum := sha256.Sum256(hdr.raw)
		if got := hex.EncodeToString(sum[:]); got != strings.ToLower(want) {
			return p.errf(ErrDigest, "header", nil, "SHA-256 is %s, the signature header says %s", got, want)
		}
	} else if want := sig.str(sigSHA1); want != "" {
		sum := sha1.Sum(hdr.raw)
		if got := hex.EncodeToString(sum[:]); got != strings.ToLower(want) {
			return p.errf(ErrDigest, "header", nil, "SHA-1 is %s, the signature header says %s", got, want)
		}
	}

	if err := p.rpmMetadata(hdr); err != nil {
		return err
	}
	if pf := hdr.str(tagPayloadFormat); pf != "" && pf != "cpio" {
		return p.errf(ErrUnsupported, "header", nil, "payload format %q", pf)
	}
	switch c := hdr.str(tagPayloadCompressor); c {
	case "":
		// rpmbuild omits the tag for an uncompressed payload (w.ufdio),
		// and rpm reads an untagged one through zlib, which passes plain
		// data through: gzip if it has the magic, else none.
		var m [2]byte
		f.ReadAt(m[:], r.payloadOff)
		p.Compression = compNone
		if string(m[:]) == string(compMagic[compGzip]) {
			p.Compression = compGzip
		}
	case compGzip, compXZ, compZstd, compBzip2, compLZMA:
		p.Compression = c
	default:
		return p.errf(ErrUnsupported, "header", nil, "payload compressor %q", c)
	}
	if d := hdr.strs(tagPayloadDigest); len(d) > 0 && d[0] != "" {
		algo, ok := hdr.int1(tagPayloadDigestAlgo)
		if !ok {
			algo = 8
		}
		a, known := rpmHashes[algo]
		if !known {
			return p.errf(ErrUnsupported, "header", nil, "payload digest algorithm %d", algo)
		}
		r.payloadAlgo, r.payloadAlgoName, r.payloadDigest = a.h, a.name, strings.ToLower(d[0])
	}
	if err := r.readFiles(hdr); err != nil {
		kind := ErrCorrupt
		if errors.Is(err, errEscapes) {
			kind = ErrUnsafe
		} else if errors.Is(err, errTooLarge) {
			kind = ErrTooLarge
		}
		return p.errf(kind, "header", err, "file list")
	}
	p.rpm = r
	return nil
}

func (p *Package) rpmMetadata(hdr *rpmHeader) error {
	p.Name = hdr.str(tagName)
	ver, rel := hdr.str(tagVersion), hdr.str(tagRelease)
	p.RawArch = hdr.str(tagArch)
	if p.Name == "" || ver == "" || rel == "" || p.RawArch == "" {
		return p.errf(ErrCorrupt, "header", nil, "name, version, release or arch missing")
	}
	evr := ver + "-" + rel
	if e, ok := hdr.int1(tagEpoch); ok {
		evr = strconv.FormatUint(e, 10) + ":" + evr
	}
	v, err := pkgversion.Parse(platform.RPM, evr)
	if err != nil {
		return p.errf(ErrCorrupt, "header", err, "version")
	}
	p.Version = v
	p.Arch, _ = platform.ParseArch(p.RawArch)

	names := hdr.strs(tagRequireName)
	flags := hdr.ints(tagRequireFlags)
	vers := hdr.strs(tagRequireVersion)
	seen := map[string]bool{}
	for i, n := range names {
		if strings.HasPrefix(n, "rpmlib(") || strings.HasPrefix(n, "/") {
			continue
		}
		d := n
		if i < len(flags) && i < len(vers) && vers[i] != "" {
			d += " " + senseOp(flags[i]) + " " + vers[i]
		}
		if !seen[d] {
			seen[d] = true
			p.Depends = append(p.Depends, d)
		}
	}
	return nil
}

// senseOp renders the comparison bits of RPMSENSE flags.
func senseOp(f uint64) string {
	const less, greater, equal = 2, 4, 8
	switch f & (less | greater | equal) {
	case less:
		return "<"
	case greater:
		return ">"
	case equal:
		return "="
	case less | equal:
		return "<="
	case greater | equal:
		return ">="
	}
	return "?"
}

var errEscapes = errors.New("escapes the package root")

func (r *rpmInfo) readFiles(hdr *rpmHeader) error {
	var names []string
	if base := hdr.strs(tagBasenames); base != nil {
		dirs := hdr.strs(tagDirnames)
		idx := hdr.ints(tagDirIndexes)
		if len(idx) != len(base) {
			return fmt.Errorf("%d basenames but %d dir indexes", len(base), len(idx))
		}
		names = make([]string, len(base))
		for i, b := range base {
			if idx[i] >= uint64(len(dirs)) {
				return fmt.Errorf("dir index %d out of range", idx[i])
			}
			names[i] = dirs[idx[i]] + b
		}
	} else {
		names = hdr.strs(tagOldFilenames)
	}
	n := len(names)
	if n == 0 {
		return nil
	}
	if n > maxFiles {
		return fmt.Errorf("%w: %d files, limit %d", errTooLarge, n, maxFiles)
	}
	sizes := hdr.ints(tagLongFileSizes)
	if sizes == nil {
		sizes = hdr.ints(tagFileSizes)
	}
	modes := hdr.ints(tagFileModes)
	digests := hdr.strs(tagFileDigests)
	links := hdr.strs(tagFileLinkTos)
	flags := hdr.ints(tagFileFlags)
	if len(sizes) != n || len(modes) != n {
		return fmt.Errorf("%d files but %d sizes and %d modes", n, len(sizes), len(modes))
	}
	for what, l := range map[string]int{"digests": len(digests), "link targets": len(links), "flags": len(flags)} {
		if l != 0 && l != n {
			return fmt.Errorf("%d files but %d %s", n, l, what)
		}
	}
	algo := uint64(1) // md5, rpm's default before FILEDIGESTALGO
	if a, ok := hdr.int1(tagFileDigestAlgo); ok {
		algo = a
	}
	if a, ok := rpmHashes[algo]; ok {
		r.fileAlgo, r.fileAlgoName = a.h, a.name
	} else if len(digests) > 0 {
		r.fileAlgoName = "algo" + strconv.FormatUint(algo, 10)
	}
	r.files = make([]rpmFile, n)
	for i, name := range names {
		clean, ok := cleanName(name)
		if !ok {
			return fmt.Errorf("file name %q: %w", name, errEscapes)
		}
		fl := rpmFile{name: name, clean: clean, size: int64(sizes[i]), mode: uint32(modes[i])}
		if sizes[i] > 1<<62 {
			return fmt.Errorf("file %s: size %d", name, sizes[i])
		}
		if digests != nil {
			fl.digest = strings.ToLower(digests[i])
		}
		if links != nil {
			fl.link = links[i]
		}
		if flags != nil {
			fl.flags = flags[i]
		}
		r.files[i] = fl
	}
	return nil
}

func (p *Package) extractRPM(f *os.File, want []string, w io.Writer, o *extractOpts) (Entry, error) {
	r := p.rpm
	// The header lists every file, so the wanted one is chosen before a
	// byte of payload is decompressed.
	idx := -1
	for _, c := range want {
		for i := range r.files {
			fl := &r.files[i]
			if fl.clean != c || fl.flags&fileGhost != 0 {
				continue
			}
			if idx >= 0 {
				return Entry{}, p.errf(ErrUnsafe, fl.name, nil, "listed twice in the header")
			}
			idx = i
		}
		if idx >= 0 {
			break
		}
	}
	if idx < 0 {
		return Entry{}, notFound(p, want)
	}
	fl := &r.files[idx]
	switch fl.mode & sIFMT {
	case sIFREG:
	case sIFLNK:
		return Entry{}, &symlinkError{name: fl.name, target: fl.link}
	default:
		return Entry{}, p.errf(ErrUnsafe, fl.name, nil, "is not a regular file (mode %o)", fl.mode)
	}
	if fl.size > p.limits.MaxFileSize {
		return Entry{}, p.errf(ErrTooLarge, fl.name, nil, "%d bytes, limit %d", fl.size, p.limits.MaxFileSize)
	}
	var sum *hashCheck
	e := Entry{Size: fl.size, Mode: os.FileMode(fl.mode & 0o777)}
	if fl.digest != "" {
		if r.fileAlgo == 0 {
			return Entry{}, p.errf(ErrUnsupported, fl.name, nil, "file digest algorithm %s", r.fileAlgoName)
		}
		e.Digest = r.fileAlgoName + ":" + fl.digest
		e.Checks = append(e.Checks, r.fileAlgoName+" file digest")
		if o != nil && o.deferSHA256 && r.fileAlgo == crypto.SHA256 {
			o.deferred, o.wantSHA256 = true, fl.digest
		} else {
			sum = &hashCheck{h: newHash(r.fileAlgo), want: fl.digest, from: "the header"}
		}
	}

	const member = "payload"
	payloadSection := io.NewSectionReader(f, r.payloadOff, p.stat.Size()-r.payloadOff)
	var payloadSum hash.Hash
	var sumSink io.Writer
	if r.payloadDigest != "" {
		payloadSum = newHash(r.payloadAlgo)
		sumSink = payloadSum
	}
	dec, check, err := p.payloadReader(payloadSection, sumSink, o)
	if err != nil {
		return Entry{}, p.decodeErr(member, err)
	}
	defer dec.Close()
	if check != "" {
		e.Checks = append(e.Checks, check)
	}
	cr := &cpioReader{
		r: &capReader{r: dec, n: p.limits.unpacked()},
		stripped: func(i int) (cpioHeader, bool) {
			if i < 0 || i >= len(r.files) {
				return cpioHeader{}, false
			}
			return cpioHeader{name: r.files[i].name, mode: r.files[i].mode, size: r.files[i].size, nlink: 1}, true
		},
	}
	written := false
	for {
		h, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Entry{}, p.readErr(member, err)
		}
		name, ok := cleanName(h.name)
		if !ok {
			return Entry{}, p.errf(ErrUnsafe, member, nil, "entry name %q escapes the package root", h.name)
		}
		if name != fl.clean {
			continue
		}
		if written {
			return Entry{}, p.errf(ErrUnsafe, h.name, nil, "appears more than once in the payload")
		}
		if h.mode&sIFMT != sIFREG {
			return Entry{}, p.errf(ErrUnsafe, h.name, nil, "is not a regular file in the payload (mode %o)", h.mode)
		}
		if h.size == 0 && fl.size > 0 && h.nlink > 1 {
			return Entry{}, p.errf(ErrUnsafe, h.name, nil, "is a hard link whose content is stored under another name")
		}
		if h.size != fl.size {
			return Entry{}, p.errf(ErrCorrupt, h.name, nil, "%d bytes in the payload, %d in the header", h.size, fl.size)
		}
		e.Name = h.name
		if err := p.copyEntry(w, cr, h.name, h.size, sum, member); err != nil {
			return Entry{}, err
		}
		written = true
	}
	if !written {
		return Entry{}, p.errf(ErrCorrupt, fl.name, nil, "listed in the header but missing from the payload")
	}
	// Read to the end: the decoder checks its trailer, and the payload
	// digest covers every compressed byte.
	if err := dec.drain(); err != nil {
		return Entry{}, p.readErr(member, err)
	}
	if payloadSum != nil {
		e.Checks = append(e.Checks, r.payloadAlgoName+" payload digest")
		if got := hex.EncodeToString(payloadSum.Sum(nil)); got != r.payloadDigest {
			return Entry{}, p.errf(ErrDigest, member, nil, "compressed payload has digest %s, the header declares %s", got, r.payloadDigest)
		}
	}
	return e, nil
}
