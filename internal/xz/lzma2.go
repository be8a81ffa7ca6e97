package xz

import "fmt"

// LZMA2 is a sequence of chunks, each announced by a control byte
// (xz-file-format.txt §5.3.1 names the filter; the chunk format is
// liblzma's, as summarised here):
//
//	0x00          end of the LZMA2 data
//	0x01          uncompressed chunk, dictionary reset
//	0x02          uncompressed chunk
//	0x03-0x7f     invalid
//	0x80-0xff     LZMA chunk; bits 5-6: 0 nothing reset, 1 state reset,
//	              2 state reset and new properties, 3 all that and a
//	              dictionary reset; bits 0-4: bits 16-20 of the
//	              uncompressed size minus one
//
// An uncompressed chunk has a 2-byte big-endian size minus one; an LZMA
// chunk the low 16 bits of its uncompressed size minus one, its
// compressed size minus one (2 bytes each), then the properties byte when
// it sets new ones. So a chunk decodes to at most 2 MiB from at most
// 64 KiB, which input keeps whole in memory. The first chunk must reset
// the dictionary, and the first LZMA chunk after a dictionary reset must
// set properties.

const maxChunk = 1 << 16 // compressed bytes of an LZMA chunk, or an uncompressed one

// window is the dictionary: a circular buffer the decoder writes to and
// the reader hands out from. Decoding stops at its end; the reader empties
// it before the decoder wraps around, so the decoder never overwrites
// bytes not yet read and every copy is within one flat slice.
type window struct {
	buf  []byte
	pos  int  // where the next byte goes
	out  int  // the first byte not yet handed out
	full bool // pos has wrapped: all of buf is history
}

// windowSlack is what the window has beyond the dictionary size, for
// copyMatch.
const windowSlack = 16

// alloc gives the window n+windowSlack bytes (n a multiple of 16, so that
// positions modulo 16 are those of the uncompressed data, as pb and lp
// need), reusing its buffer when it is large enough.
func (w *window) alloc(n int) {
	n += windowSlack
	if cap(w.buf) < n {
		w.buf = nil // the old one can go before the new one comes
		w.buf = make([]byte, n)
	}
	w.buf = w.buf[:n]
	w.reset()
}

func (w *window) reset() {
	w.pos, w.out, w.full = 0, 0, false
}

type chunkKind uint8

const (
	noChunk chunkKind = iota
	lzmaChunk
	copyChunk
)

type lzma2 struct {
	w  window
	lz lzmaDecoder

	needDictReset bool
	needProps     bool

	kind     chunkKind
	unpacked int // bytes the current chunk has yet to produce
	packed   int // compressed bytes of the current LZMA chunk, at in.lo
	produced int64
}

var errDistance = fmt.Errorf("%w: LZMA match distance beyond the data decoded", ErrData)

func (l *lzma2) reset() {
	l.needDictReset, l.needProps = true, true
	l.kind, l.unpacked, l.packed, l.produced = noChunk, 0, 0, 0
}

// decode decodes more of the LZMA2 data from in into the window, which
// must have been read to its end, and reports the end of the data.
func (l *lzma2) decode(in *input) (end bool, err error) {
	if l.unpacked == 0 {
		if end, err := l.nextChunk(in); end || err != nil {
			return end, err
		}
	}
	w := &l.w
	if w.pos == len(w.buf) {
		w.pos, w.out, w.full = 0, 0, true
	}
	start := w.pos
	lim := min(len(w.buf), w.pos+l.unpacked)
	switch l.kind {
	case lzmaChunk:
		err = l.lz.decode(w, in.buf, lim)
		if l.lz.ip > in.lo+l.packed {
			return false, fmt.Errorf("%w: LZMA chunk longer than its %d bytes", ErrData, l.packed)
		}
	case copyChunk:
		if in.lo == in.hi {
			if err := in.fill(1); err != nil {
				return false, err
			}
		}
		n := copy(w.buf[w.pos:lim], in.buf[in.lo:in.hi])
		in.skip(n)
		w.pos += n
	}
	l.unpacked -= w.pos - start
	l.produced += int64(w.pos - start)
	return false, err
}

// nextChunk ends the current chunk and reads the next chunk's header.
func (l *lzma2) nextChunk(in *input) (end bool, err error) {
	if l.kind == lzmaChunk {
		if !l.lz.chunkDone(in.lo + l.packed) {
			return false, fmt.Errorf("%w: LZMA chunk does not end with its %d bytes", ErrData, l.packed)
		}
		in.skip(l.packed)
	}
	l.kind = noChunk
	b, err := in.take(1)
	if err != nil {
		return false, err
	}
	ctrl := b[0]
	switch {
	case ctrl == 0x00:
		return true, nil
	case ctrl == 0x01 || ctrl >= 0xe0:
		l.w.reset()
		l.needDictReset, l.needProps = false, true
	case l.needDictReset:
		return false, fmt.Errorf("%w: first LZMA2 chunk (control byte 0x%02x) does not reset the dictionary", ErrData, ctrl)
	}
	if ctrl < 0x80 {
		if ctrl > 0x02 {
			return false, fmt.Errorf("%w: LZMA2 control byte 0x%02x", ErrData, ctrl)
		}
		h, err := in.take(2)
		if err != nil {
			return false, err
		}
		l.kind, l.unpacked = copyChunk, int(h[0])<<8|int(h[1])+1
		return false, nil
	}
	hlen := 4
	if ctrl >= 0xc0 {
		hlen = 5
	}
	h, err := in.take(hlen)
	if err != nil {
		return false, err
	}
	l.unpacked = int(ctrl&0x1f)<<16 | int(h[0])<<8 | int(h[1]) + 1
	l.packed = int(h[2])<<8 | int(h[3]) + 1
	switch {
	case ctrl >= 0xc0:
		if err := l.lz.setProps(h[4]); err != nil {
			return false, err
		}
		l.needProps = false
		l.lz.resetState()
	case l.needProps:
		return false, fmt.Errorf("%w: LZMA2 chunk (control byte 0x%02x) without properties after a dictionary reset", ErrData, ctrl)
	case ctrl >= 0xa0:
		l.lz.resetState()
	}
	if err := in.fill(l.packed); err != nil {
		return false, err
	}
	if err := l.lz.startChunk(in.buf, in.lo, in.lo+l.packed); err != nil {
		return false, err
	}
	l.kind = lzmaChunk
	return false, nil
}
