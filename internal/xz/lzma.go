package xz

import (
	"encoding/binary"
	"fmt"
)

// The LZMA decoder proper: a range decoder over adaptive binary
// probabilities, feeding a literal coder, two length coders and a distance
// coder, as LZMA2 chunks carry them (xz-file-format.txt points to the LZMA
// SDK's lzma-specification for the details).
//
// Speed comes from keeping the range decoder's state (range, code, input
// position) and the match state in local variables of one loop, decode,
// that runs until the output limit. Its helpers take and return those
// values instead of pointing at a struct, so that they inline and the
// values stay in registers. The compressed chunk is wholly in memory (an
// LZMA2 chunk is at most 64 KiB), so input is an array and an index, and
// the decoded bytes go straight into the flat dictionary.

const (
	posBitsMax  = 4
	probBits    = 11
	probInit    = 1 << (probBits - 1)
	moveBits    = 5
	topValue    = 1 << 24
	matchMinLen = 2
	// Distance slots 4..13 use the "special" probabilities, 14 and up
	// direct bits and the 4 align bits.
	endPosModel   = 14
	fullDistances = 1 << (endPosModel >> 1)
	alignBits     = 4
	lenLowSyms    = 8
	lenMidSyms    = 8
	lenHighSyms   = 256
	distStates    = 4
)

type prob uint16

// The arrays are larger than the format needs where that lets an index
// masked to the array size replace a bounds check.
type lenProbs struct {
	choice  prob
	choice2 prob
	low     [1 << posBitsMax][lenLowSyms]prob
	mid     [1 << posBitsMax][lenMidSyms]prob
	high    [lenHighSyms]prob
}

type probs struct {
	isMatch    [256]prob // state<<4 | posState
	isRep      [16]prob
	isRepG0    [16]prob
	isRepG1    [16]prob
	isRepG2    [16]prob
	isRep0Long [256]prob // state<<4 | posState
	posSlot    [distStates][64]prob
	posSpecial [128]prob // fullDistances-endPosModel of them are used
	align      [1 << alignBits]prob
	matchLen   lenProbs
	repLen     lenProbs
	literal    [16][0x400]prob // (1<<lp)<<lc of them, 0x300 of each, are used
}

// lzmaDecoder is the state that lasts across decode calls: within a chunk
// when the output limit cuts it, and across chunks as LZMA2 allows.
type lzmaDecoder struct {
	p     probs
	lc    uint
	lpMsk int
	pbMsk int

	state uint32
	rep   [4]int // distances minus one, rep[0] the latest
	pend  int    // bytes of the last match not yet copied (output limit)

	// the range decoder, between calls
	rng  uint32
	code uint32
	ip   int
}

// setProps applies an LZMA2 properties byte: (pb*5 + lp)*9 + lc.
func (d *lzmaDecoder) setProps(b byte) error {
	if b >= 9*5*5 {
		return fmt.Errorf("%w: LZMA properties byte 0x%02x", ErrData, b)
	}
	lc := uint(b % 9)
	lp := uint(b/9) % 5
	pb := uint(b/9) / 5
	if lc+lp > 4 {
		return fmt.Errorf("%w: LZMA2 lc %d + lp %d is more than 4", ErrData, lc, lp)
	}
	d.lc, d.lpMsk, d.pbMsk = lc, 1<<lp-1, 1<<pb-1
	return nil
}

// resetState starts a new LZMA state (LZMA2 state reset): probabilities,
// state and distances back to their initial values.
func (d *lzmaDecoder) resetState() {
	p := &d.p
	for _, a := range [][]prob{p.isMatch[:], p.isRep[:], p.isRepG0[:], p.isRepG1[:], p.isRepG2[:],
		p.isRep0Long[:], p.posSpecial[:], p.align[:]} {
		fill(a)
	}
	for i := range p.posSlot {
		fill(p.posSlot[i][:])
	}
	for i := range (d.lpMsk + 1) << d.lc {
		fill(p.literal[i&15][:0x300])
	}
	for _, l := range []*lenProbs{&p.matchLen, &p.repLen} {
		l.choice, l.choice2 = probInit, probInit
		for i := range l.low {
			fill(l.low[i][:])
			fill(l.mid[i][:])
		}
		fill(l.high[:])
	}
	d.state = 0
	d.rep = [4]int{}
	d.pend = 0
}

func fill(p []prob) {
	for i := range p {
		p[i] = probInit
	}
}

// startChunk initialises the range decoder on the chunk in[lo:end].
func (d *lzmaDecoder) startChunk(in *inBuf, lo, end int) error {
	if end-lo < 5 || in[lo] != 0 {
		return fmt.Errorf("%w: LZMA2 chunk does not start a range code", ErrData)
	}
	d.rng = 0xffffffff
	d.code = uint32(in[lo+1])<<24 | uint32(in[lo+2])<<16 | uint32(in[lo+3])<<8 | uint32(in[lo+4])
	d.ip = lo + 5
	return nil
}

// chunkDone tells whether the range code ended exactly at end, as an
// LZMA2 encoder flushes it.
func (d *lzmaDecoder) chunkDone(end int) bool {
	return d.ip == end && d.code == 0 && d.pend == 0
}

// bit decodes one bit with probability *p and normalises the range, so
// that the range is always normalised between symbols and the chunk's
// last byte is read by its last bit. in is the whole input buffer, the
// chunk a part of it, and ip is masked to the buffer instead of checked
// against the chunk: past the chunk's end it reads other bytes, which
// decode garbage, and the caller sees ip beyond the end and rejects the
// chunk.
func bit(p *prob, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, uint32) {
	bound := (rng >> probBits) * uint32(*p)
	b := uint32(0)
	if code < bound {
		rng = bound
		*p += (1<<probBits - *p) >> moveBits
	} else {
		rng -= bound
		code -= bound
		*p -= *p >> moveBits
		b = 1
	}
	if rng < topValue {
		rng <<= 8
		code = code<<8 | uint32(in[ip&(inBufSize-1)])
		ip++
	}
	return rng, code, ip, b
}

// branchless decodes a bit like bit, but computes both outcomes and
// picks one: the bits of literals and trees are too close to even odds
// for a branch to be predicted, and with nothing but assignments in the
// if, the compiler makes it conditional moves. The range is normalised
// by norm, which is separate so that both inline.
func branchless(p *prob, rng, code uint32) (uint32, uint32, uint32) {
	v := uint32(*p)
	bound := (rng >> probBits) * v
	r, c, np, b := rng-bound, code-bound, v-v>>moveBits, uint32(1)
	p0 := v + (1<<probBits-v)>>moveBits
	if code < bound {
		r, c, np, b = bound, code, p0, 0
	}
	*p = prob(np)
	return r, c, b
}

// norm normalises the range after a bit, as bit does.
func norm(rng, code uint32, in *inBuf, ip int) (uint32, uint32, int) {
	if rng < topValue {
		rng <<= 8
		code = code<<8 | uint32(in[ip&(inBufSize-1)])
		ip++
	}
	return rng, code, ip
}

// tree decodes an n-bit symbol, most significant bit first, over the
// probabilities p[1 : 1<<n].
func tree(p []prob, n uint, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, uint32) {
	m := uint32(1)
	for range n {
		var b uint32
		rng, code, b = branchless(&p[m&uint32(len(p)-1)], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		m = m<<1 | b
	}
	return rng, code, ip, m - 1<<n
}

// reverseTree decodes an n-bit symbol, least significant bit first, over
// the probabilities p[0 : 1<<n-1].
func reverseTree(p []prob, n int, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, uint32) {
	m, sym := uint32(1), uint32(0)
	for i := range n {
		var b uint32
		rng, code, b = branchless(&p[m-1], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		m = m<<1 | b
		sym |= b << i
	}
	return rng, code, ip, sym
}

// literal decodes a byte over the 0x100 probabilities of lit. It and
// matchedLiteral are functions of their own, not part of decode's loop,
// so that their few variables stay in registers.
func literal(lit *[0x400]prob, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, uint32) {
	sym := uint32(1)
	for sym < 0x100 {
		var b uint32
		rng, code, b = branchless(&lit[sym], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		sym = sym<<1 | b
	}
	return rng, code, ip, sym & 0xff
}

// matchedLiteral decodes a literal after a match: the byte at rep0,
// match, selects the probabilities for as long as the decoded bits agree
// with its bits; from the first that does not, it is a plain literal, in
// a loop with less to compute per bit.
func matchedLiteral(lit *[0x400]prob, match, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, uint32) {
	sym := uint32(1)
	for sym < 0x100 {
		mb := match >> 7 & 1
		match <<= 1
		var b uint32
		rng, code, b = branchless(&lit[(0x100+mb<<8+sym)&0x3ff], rng, code)
		rng, code, ip = norm(rng, code, in, ip)
		sym = sym<<1 | b
		if b != mb {
			// The rest decodes as a plain literal.
			for sym < 0x100 {
				rng, code, b = branchless(&lit[sym], rng, code)
				rng, code, ip = norm(rng, code, in, ip)
				sym = sym<<1 | b
			}
		}
	}
	return rng, code, ip, sym & 0xff
}

// length decodes a match length minus matchMinLen.
func length(l *lenProbs, posState int, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, int) {
	var b, v uint32
	rng, code, ip, b = bit(&l.choice, rng, code, in, ip)
	if b == 0 {
		rng, code, ip, v = tree(l.low[posState&(1<<posBitsMax-1)][:], 3, rng, code, in, ip)
		return rng, code, ip, int(v)
	}
	rng, code, ip, b = bit(&l.choice2, rng, code, in, ip)
	if b == 0 {
		rng, code, ip, v = tree(l.mid[posState&(1<<posBitsMax-1)][:], 3, rng, code, in, ip)
		return rng, code, ip, int(v) + lenLowSyms
	}
	rng, code, ip, v = tree(l.high[:], 8, rng, code, in, ip)
	return rng, code, ip, int(v) + lenLowSyms + lenMidSyms
}

// distance decodes a match distance minus one for a match of length
// matchMinLen+l.
func (p *probs) distance(l int, rng, code uint32, in *inBuf, ip int) (uint32, uint32, int, int) {
	var slot uint32
	rng, code, ip, slot = tree(p.posSlot[min(l, distStates-1)][:], 6, rng, code, in, ip)
	if slot < 4 {
		return rng, code, ip, int(slot)
	}
	direct := int(slot>>1) - 1
	dist := (2 | slot&1) << direct
	var v uint32
	if slot < endPosModel {
		rng, code, ip, v = reverseTree(p.posSpecial[dist-slot:], direct, rng, code, in, ip)
		return rng, code, ip, int(dist + v)
	}
	// Direct bits, each with probability one half, then the align bits.
	for range direct - alignBits {
		rng >>= 1
		code -= rng
		t := uint32(int32(code) >> 31) // all ones when code was below rng
		code += rng & t
		v = v<<1 + t + 1
		if rng < topValue {
			rng <<= 8
			code = code<<8 | uint32(in[ip&(inBufSize-1)])
			ip++
		}
	}
	dist += v << alignBits
	rng, code, ip, v = reverseTree(p.align[:], alignBits, rng, code, in, ip)
	return rng, code, ip, int(dist + v)
}

// decode decodes symbols from the input buffer into w until w.pos
// reaches lim (at most len(w.buf)). It returns an error for a distance
// beyond the dictionary's history; overrunning the chunk is the caller's
// to detect. Only what every symbol needs is in local variables: there
// are not registers enough for more.
func (d *lzmaDecoder) decode(w *window, in *inBuf, lim int) error {
	// The states after a literal, a match, a repeated match and a short
	// repeat (one byte at rep0), by the state before.
	nextLit := [16]uint32{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 4, 5}
	nextMatch := [16]uint32{7, 7, 7, 7, 7, 7, 7, 10, 10, 10, 10, 10}
	nextRep := [16]uint32{8, 8, 8, 8, 8, 8, 8, 11, 11, 11, 11, 11}
	nextShortRep := [16]uint32{9, 9, 9, 9, 9, 9, 9, 11, 11, 11, 11, 11}

	buf := w.buf
	lim = min(lim, len(buf))
	pos := w.pos
	if d.pend > 0 {
		n := min(d.pend, lim-pos)
		pos = copyMatch(buf, pos, d.rep[0], n)
		d.pend -= n
	}
	rng, code, ip := d.rng, d.code, d.ip
	state := d.state & 15
	rep0 := d.rep[0]
	p := &d.p
	var err error
	for pos < lim {
		posState := pos & d.pbMsk
		var b uint32
		rng, code, ip, b = bit(&p.isMatch[uint8(state<<4|uint32(posState))], rng, code, in, ip)
		if b == 0 {
			prev := 0
			if pos > 0 {
				prev = int(buf[pos-1])
			} else if w.full {
				prev = int(buf[len(buf)-1])
			}
			lc := d.lc & 7
			lit := &p.literal[((pos&d.lpMsk)<<lc+prev>>(8-lc))&15]
			var sym uint32
			if state < 7 {
				rng, code, ip, sym = literal(lit, rng, code, in, ip)
			} else {
				src := pos - rep0 - 1
				if src < 0 {
					src += len(buf)
				}
				rng, code, ip, sym = matchedLiteral(lit, uint32(buf[src]), rng, code, in, ip)
			}
			buf[pos] = byte(sym)
			pos++
			state = nextLit[state]
			continue
		}
		var l int
		rng, code, ip, b = bit(&p.isRep[state], rng, code, in, ip)
		if b == 0 {
			rng, code, ip, l = length(&p.matchLen, posState, rng, code, in, ip)
			d.rep[3], d.rep[2], d.rep[1] = d.rep[2], d.rep[1], rep0
			rng, code, ip, rep0 = p.distance(l, rng, code, in, ip)
			state = nextMatch[state]
		} else {
			rng, code, ip, b = bit(&p.isRepG0[state], rng, code, in, ip)
			if b == 0 {
				rng, code, ip, b = bit(&p.isRep0Long[uint8(state<<4|uint32(posState))], rng, code, in, ip)
				if b == 0 {
					if rep0 >= len(buf) || !w.full && rep0 >= pos {
						err = errDistance
						break
					}
					src := pos - rep0 - 1
					if src < 0 {
						src += len(buf)
					}
					buf[pos] = buf[src]
					pos++
					state = nextShortRep[state]
					continue
				}
			} else {
				var dist int
				rng, code, ip, b = bit(&p.isRepG1[state], rng, code, in, ip)
				if b == 0 {
					dist = d.rep[1]
				} else {
					rng, code, ip, b = bit(&p.isRepG2[state], rng, code, in, ip)
					if b == 0 {
						dist = d.rep[2]
					} else {
						dist, d.rep[3] = d.rep[3], d.rep[2]
					}
					d.rep[2] = d.rep[1]
				}
				d.rep[1], rep0 = rep0, dist
			}
			rng, code, ip, l = length(&p.repLen, posState, rng, code, in, ip)
			state = nextRep[state]
		}
		if rep0 >= len(buf) || !w.full && rep0 >= pos {
			err = errDistance
			break
		}
		l += matchMinLen
		n := min(l, lim-pos)
		pos = copyMatch(buf, pos, rep0, n)
		d.pend = l - n
	}
	d.rng, d.code, d.ip = rng, code, ip
	d.state = state
	d.rep[0] = rep0
	w.pos = pos
	return err
}

// copyMatch writes the n bytes that start dist+1 bytes before pos in the
// circular buf to buf[pos:pos+n] (pos+n <= len(buf)) and returns the new
// position. Overlapping matches repeat a period of dist+1 bytes.
func copyMatch(buf []byte, pos, dist, n int) int {
	end := pos + n
	src := pos - dist - 1
	if src < 0 {
		// The match starts in the older part of the buffer, after pos:
		// memmove reads it before the copy can reach it. The rest
		// continues from buf[0], dist+1 bytes back again.
		src += len(buf)
		pos += copy(buf[pos:end], buf[src:])
		src = 0
	}
	if end-pos <= 8 {
		// Most matches are short: a call to memmove costs more. When
		// the source is at least 8 bytes back, one 8-byte load and store
		// do, whatever the length: the bytes stored beyond end are either
		// not yet written or older than the dictionary size (window.alloc
		// leaves windowSlack for that), so no valid match reads them.
		if dist >= 7 && pos+8 <= len(buf) {
			binary.LittleEndian.PutUint64(buf[pos:], binary.LittleEndian.Uint64(buf[src:]))
			return end
		}
		for ; pos < end; pos, src = pos+1, src+1 {
			buf[pos] = buf[src]
		}
		return end
	}
	// buf[src:pos] is whole periods of the match, so copying it all
	// at once, again and again, doubles what is copied each time.
	for pos < end {
		pos += copy(buf[pos:end], buf[src:pos])
	}
	return end
}
