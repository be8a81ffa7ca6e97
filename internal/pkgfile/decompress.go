package pkgfile

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/nodeimage/reconcile/internal/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Compression names, as rpm's PAYLOADCOMPRESSOR spells them.
const (
	compNone  = "none"
	compGzip  = "gzip"
	compXZ    = "xz"
	compZstd  = "zstd"
	compBzip2 = "bzip2"
	compLZMA  = "lzma"
)

var compMagic = map[string][]byte{
	compGzip:  {0x1f, 0x8b},
	compXZ:    {0xfd, '7', 'z', 'X', 'Z', 0x00},
	compZstd:  {0x28, 0xb5, 0x2f, 0xfd},
	compBzip2: {'B', 'Z', 'h'},
}

// errMagic marks a stream whose first bytes are not its compressor's.
var errMagic = errors.New("wrong magic bytes")

// decompress returns a reader of the uncompressed stream that br holds,
// and the name of the integrity check its decoder verifies over every
// decoded byte ("" when the format has none or the stream turned it off).
// It checks the compressor's magic first, so that a mislabelled member is
// reported as such rather than as whatever the decoder makes of it. A
// dictionary or window beyond l.MaxWindow fails the read with errTooLarge,
// naming the limit. Close releases the decoder's goroutines and memory.
//
// slot, if not nil, lends its xz decoder.
func decompress(comp string, br *bufio.Reader, l Limits, slot *decoderSlot) (io.ReadCloser, string, error) {
	if m, ok := compMagic[comp]; ok {
		got, err := br.Peek(len(m))
		if err != nil {
			return nil, "", fmt.Errorf("reading %s magic: %w", comp, noEOF(err))
		}
		if !bytes.Equal(got, m) {
			return nil, "", fmt.Errorf("%w for %s: % x", errMagic, comp, got)
		}
	}
	window := l.window()
	switch comp {
	case compNone:
		return io.NopCloser(br), "", nil
	case compGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", err
		}
		return zr, "gzip CRC32", nil
	case compXZ:
		hdr, _ := br.Peek(xzHeaderLen)
		// internal/xz: 1.5× the speed of xi2/xz, which is 1.5× that of
		// ulikunitz/xz, and close to liblzma's.
		if slot == nil {
			slot = &decoderSlot{}
		}
		xr, err := slot.xzReader(br, uint32(window))
		if err != nil {
			return nil, "", xzErr(err, uint32(window))
		}
		return xzLimitReader{xr, uint32(window)}, xzCheck(hdr), nil
	case compZstd:
		check := ""
		// Frame_Header_Descriptor bit 2: the frame ends with an XXH64 of
		// its content, which the decoder verifies. dpkg-deb and rpm write
		// one frame.
		if h, err := br.Peek(5); err == nil && h[4]&4 != 0 {
			check = "zstd frame checksum"
		}
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(uint64(window)),
			zstd.WithDecoderMaxMemory(uint64(window)),
			// One goroutine: more only hold decoded blocks ahead of a
			// writer that is not faster, and memory per core.
			zstd.WithDecoderConcurrency(1),
		)
		if err != nil {
			return nil, "", err
		}
		return zstdReader{zr, window}, check, nil
	case compBzip2:
		return io.NopCloser(bzip2.NewReader(br)), "bzip2 CRC32", nil
	case compLZMA:
		// The .lzma header: properties, then the dictionary size, which
		// the decoder allocates whole.
		h, err := br.Peek(5)
		if err != nil {
			return nil, "", fmt.Errorf("reading lzma header: %w", noEOF(err))
		}
		if d := int64(binary.LittleEndian.Uint32(h[1:])); d > window {
			return nil, "", windowErr("LZMA dictionary", d, window)
		}
		lr, err := lzma.NewReader(br)
		if err != nil {
			return nil, "", err
		}
		return io.NopCloser(lr), "", nil
	}
	return nil, "", fmt.Errorf("unknown compression %q", comp)
}

// xzCheck names the check an xz stream header declares.
func xzCheck(hdr []byte) string {
	if len(hdr) < 8 {
		return ""
	}
	switch xz.CheckID(hdr[7] & 0x0f) {
	case xz.CheckCRC32:
		return "xz CRC32"
	case xz.CheckCRC64:
		return "xz CRC64"
	case xz.CheckSHA256:
		return "xz SHA-256"
	}
	return ""
}

func windowErr(what string, size, limit int64) error {
	return fmt.Errorf("%w: %s of %d MiB, more than the %d MiB limit (Limits.MaxWindow)", errTooLarge, what, size>>20, limit>>20)
}

// xzErr names the limit when the xz decoder refuses a dictionary beyond it.
func xzErr(err error, dictMax uint32) error {
	if errors.Is(err, xz.ErrMemlimit) {
		return fmt.Errorf("%w: LZMA2 dictionary larger than the %d MiB limit (Limits.MaxWindow)", errTooLarge, dictMax>>20)
	}
	return err
}

type xzLimitReader struct {
	r       *xz.Reader
	dictMax uint32
}

func (x xzLimitReader) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err != nil && err != io.EOF {
		err = xzErr(err, x.dictMax)
	}
	return n, err
}

func (xzLimitReader) Close() error { return nil }

type zstdReader struct {
	d      *zstd.Decoder
	window int64
}

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		err = fmt.Errorf("%w: zstd window larger than the %d MiB limit (Limits.MaxWindow)", errTooLarge, z.window>>20)
	}
	return n, err
}

func (z zstdReader) Close() error { z.d.Close(); return nil }

// noEOF turns a premature end of input into io.ErrUnexpectedEOF, which is
// what it means inside an archive.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
