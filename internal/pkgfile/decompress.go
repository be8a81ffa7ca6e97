package pkgfile

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
	"github.com/xi2/xz"
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

// maxZstdWindow bounds the memory a zstd frame can make the decoder take.
// dpkg and rpm use windows of 8 MiB at their default levels and 128 MiB
// with --long; more is hostile.
const maxZstdWindow = 128 << 20

// errMagic marks a stream whose first bytes are not its compressor's.
var errMagic = errors.New("wrong magic bytes")

// decompress returns a reader of the uncompressed stream that br holds.
// It checks the compressor's magic first, so that a mislabelled member is
// reported as such rather than as whatever the decoder makes of it. Close
// releases the decoder's goroutines and memory.
func decompress(comp string, br *bufio.Reader) (io.ReadCloser, error) {
	if m, ok := compMagic[comp]; ok {
		got, err := br.Peek(len(m))
		if err != nil {
			return nil, fmt.Errorf("reading %s magic: %w", comp, noEOF(err))
		}
		if !bytes.Equal(got, m) {
			return nil, fmt.Errorf("%w for %s: % x", errMagic, comp, got)
		}
	}
	switch comp {
	case compNone:
		return io.NopCloser(br), nil
	case compGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case compXZ:
		// xi2/xz decodes about 1.5× faster than ulikunitz/xz (FACTS); its
		// dictionary cap (64 MiB, enough for xz -9) bounds memory.
		xr, err := xz.NewReader(br, 0)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	case compZstd:
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecoderMaxMemory(maxZstdWindow),
			zstd.WithDecoderConcurrency(zstdConcurrency),
		)
		if err != nil {
			return nil, err
		}
		return zstdCloser{zr}, nil
	case compBzip2:
		return io.NopCloser(bzip2.NewReader(br)), nil
	case compLZMA:
		lr, err := lzma.NewReader(br)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(lr), nil
	}
	return nil, fmt.Errorf("unknown compression %q", comp)
}

// zstdConcurrency: with 2 the decoder decodes the next block while the
// caller writes and hashes the previous one.
var zstdConcurrency = 2

type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }

// noEOF turns a premature end of input into io.ErrUnexpectedEOF, which is
// what it means inside an archive.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
