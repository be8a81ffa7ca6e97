package pkgfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/xi2/xz"
)

// Block-parallel xz decoding. dpkg-deb compresses data.tar with liblzma's
// multi-threaded encoder, which cuts the stream into independent blocks
// (24 MiB each at the default preset) and lists their sizes in the
// stream's index. The package file is a seekable file, so each block can be
// decoded on its own core: every block is wrapped into a one-block xz
// stream of its own (the original stream header, the block, a one-record
// index and a footer) and handed to an ordinary decoder, which checks the
// block's CRC and sizes as usual. Pure-Go xz is 2-3× slower than liblzma
// per core (FACTS); this buys back what the cores allow.
//
// Anything unusual (one block, several streams, stream padding, blocks
// larger than xzMaxParBlock) falls back to the sequential decoder.

const (
	xzHeaderLen   = 12
	xzMaxParBlock = 64 << 20 // a decoded block is held in memory
	xzMaxBlocks   = 1 << 16
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

type xzBlock struct {
	off          int64 // of the block in the section
	unpadded     int64
	uncompressed int64
}

// xzBlocks reads the index of the single xz stream that fills r (size
// bytes) and returns its stream header and blocks. ok is false when the
// stream is not one that parallel decoding handles, including when it is
// damaged: the sequential decoder then reports what is wrong.
func xzBlocks(r io.ReaderAt, size int64) (header []byte, blocks []xzBlock, ok bool) {
	if size < 2*xzHeaderLen {
		return nil, nil, false
	}
	header = make([]byte, xzHeaderLen)
	footer := make([]byte, xzHeaderLen)
	if _, err := r.ReadAt(header, 0); err != nil {
		return nil, nil, false
	}
	if _, err := r.ReadAt(footer, size-xzHeaderLen); err != nil {
		return nil, nil, false
	}
	if !bytes.Equal(header[:6], xzMagic) || string(footer[10:]) != "YZ" ||
		!bytes.Equal(header[6:8], footer[8:10]) ||
		crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer) {
		return nil, nil, false
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:])) + 1) * 4
	indexOff := size - xzHeaderLen - indexSize
	if indexOff < xzHeaderLen || indexSize > 16*xzMaxBlocks+16 {
		return nil, nil, false
	}
	index := make([]byte, indexSize)
	if _, err := r.ReadAt(index, indexOff); err != nil {
		return nil, nil, false
	}
	if index[0] != 0 || crc32.ChecksumIEEE(index[:indexSize-4]) != binary.LittleEndian.Uint32(index[indexSize-4:]) {
		return nil, nil, false
	}
	rd := bytes.NewReader(index[1 : indexSize-4])
	n, err := binary.ReadUvarint(rd)
	if err != nil || n < 2 || n > xzMaxBlocks {
		return nil, nil, false
	}
	off := int64(xzHeaderLen)
	for range n {
		u, err1 := binary.ReadUvarint(rd)
		c, err2 := binary.ReadUvarint(rd)
		if err1 != nil || err2 != nil || u == 0 || u > uint64(size) || c > xzMaxParBlock {
			return nil, nil, false
		}
		blocks = append(blocks, xzBlock{off: off, unpadded: int64(u), uncompressed: int64(c)})
		off += (int64(u) + 3) &^ 3
	}
	if off != indexOff {
		return nil, nil, false // padding or another stream in between
	}
	return header, blocks, true
}

// oneBlockStream returns the index and footer that make block b, after
// header, a complete xz stream.
func oneBlockStream(header []byte, b xzBlock) []byte {
	var idx []byte
	idx = append(idx, 0)
	idx = binary.AppendUvarint(idx, 1)
	idx = binary.AppendUvarint(idx, uint64(b.unpadded))
	idx = binary.AppendUvarint(idx, uint64(b.uncompressed))
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	var foot [xzHeaderLen]byte
	binary.LittleEndian.PutUint32(foot[4:], uint32(len(idx)/4-1))
	copy(foot[8:10], header[6:8])
	copy(foot[10:], "YZ")
	binary.LittleEndian.PutUint32(foot[:], crc32.ChecksumIEEE(foot[4:10]))
	return append(idx, foot[:]...)
}

// parallelXZ reads the decompressed blocks in order while later blocks
// decode on other goroutines. Each block arrives as a stream of chunks: the
// block being read costs only the chunks in flight, and only the blocks
// decoding ahead of it accumulate (about one block per extra core).
type parallelXZ struct {
	r       io.ReaderAt
	header  []byte
	blocks  []xzBlock
	next    int // next block to start
	pending []chan xzChunk
	cur     []byte // unread part of chunk
	chunk   []byte
	err     error
	stop    chan struct{}
}

type xzChunk struct {
	data []byte
	err  error // io.EOF after a block's last chunk
}

const xzChunkSize = 1 << 20

// xzChunks recycles chunks: without it the garbage of a 100 MiB package
// doubles the decoder's peak RSS before the GC catches up.
var xzChunks = sync.Pool{New: func() any { return make([]byte, xzChunkSize) }}

// xzParallel can be switched off to measure what it buys.
var xzParallel = true

// newParallelXZ returns a decoder for the xz stream in r (size bytes), or
// nil when sequential decoding should be used.
func newParallelXZ(r io.ReaderAt, size int64) io.ReadCloser {
	workers := runtime.GOMAXPROCS(0)
	if !xzParallel || workers < 2 {
		return nil
	}
	header, blocks, ok := xzBlocks(r, size)
	if !ok {
		return nil
	}
	p := &parallelXZ{r: r, header: header, blocks: blocks, stop: make(chan struct{})}
	for range workers {
		p.start()
	}
	return p
}

func (p *parallelXZ) start() {
	if p.next >= len(p.blocks) {
		return
	}
	b := p.blocks[p.next]
	p.next++
	// Room for every chunk of the block, so a decoder never waits for
	// the reader: the cores stay busy.
	ch := make(chan xzChunk, b.uncompressed/xzChunkSize+2)
	p.pending = append(p.pending, ch)
	go p.decode(b, ch)
}

func (p *parallelXZ) decode(b xzBlock, ch chan<- xzChunk) {
	src := io.MultiReader(
		bytes.NewReader(p.header),
		io.NewSectionReader(p.r, b.off, (b.unpadded+3)&^3),
		bytes.NewReader(oneBlockStream(p.header, b)),
	)
	fail := func(err error) { ch <- xzChunk{err: fmt.Errorf("xz block at offset %d: %w", b.off, noEOF(err))} }
	zr, err := xz.NewReader(newBufReader(src), 0)
	if err != nil {
		fail(err)
		return
	}
	zr.Multistream(false)
	for left := b.uncompressed; left > 0; {
		select {
		case <-p.stop:
			return
		default:
		}
		buf := xzChunks.Get().([]byte)[:min(left, xzChunkSize)]
		if _, err := io.ReadFull(zr, buf); err != nil {
			fail(err)
			return
		}
		ch <- xzChunk{data: buf}
		left -= int64(len(buf))
	}
	// Reading on to the end makes the decoder check the block's CRC and
	// the index; the block must end where its index record says.
	var one [1]byte
	switch n, err := zr.Read(one[:]); {
	case n != 0:
		fail(errors.New("block longer than its index record"))
	case err != io.EOF:
		fail(err)
	default:
		ch <- xzChunk{err: io.EOF}
	}
}

func (p *parallelXZ) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.chunk != nil {
			xzChunks.Put(p.chunk[:cap(p.chunk)])
			p.chunk = nil
		}
		if p.err != nil {
			return 0, p.err
		}
		if len(p.pending) == 0 {
			p.err = io.EOF
			return 0, io.EOF
		}
		c := <-p.pending[0]
		switch {
		case c.err == io.EOF:
			p.pending = p.pending[1:]
			p.start()
		case c.err != nil:
			p.err = c.err
			return 0, p.err
		default:
			p.cur, p.chunk = c.data, c.data
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Close stops the decoders at their next chunk.
func (p *parallelXZ) Close() error {
	close(p.stop)
	return nil
}
