package pkgfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Block-parallel xz decoding. dpkg-deb compresses data.tar with liblzma's
// multi-threaded encoder, which cuts the stream into independent blocks
// (24 MiB each at the default preset) and lists their sizes in the
// stream's index. The package file is a seekable file, so blocks can be
// decoded on two goroutines at once: every block is wrapped into a
// one-block xz stream of its own (the original stream header, the block, a
// one-record index and a footer) and handed to an ordinary decoder, which
// checks the block's CRC and sizes as usual. internal/xz decodes at about
// liblzma's speed per core, but dpkg-deb's liblzma uses every core; this
// buys back what a second core allows.
//
// Decoded blocks do not wait in the heap: each decoder writes its block
// straight into an unlinked scratch file at the block's offset in the
// decoded stream (the offsets come from the index), and the reader reads
// the stream back in order as its prefix completes. The page cache is the
// buffer; a block read is punched out of the file, so the scratch file
// holds at most xzAhead blocks. The heap holds two decoders (their
// dictionaries, ≤ Limits.MaxWindow each) and their buffers, whatever the
// core count.
//
// Anything unusual (one block, several streams, stream padding, blocks
// larger than Limits.MaxWindow) is decoded sequentially.

const (
	xzHeaderLen = 12
	xzMaxBlocks = 1 << 16
	// xzWorkers decode blocks at once: fixed, so that memory does not grow
	// with the core count.
	xzWorkers = 2
	// xzAhead bounds the blocks started beyond the one being read.
	xzAhead = xzWorkers + 1
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

type xzBlock struct {
	off          int64 // of the block in the section
	unpadded     int64
	uncompressed int64
	uoff         int64 // of its content in the decoded stream
}

// xzBlocks reads the index of the single xz stream that fills r (size
// bytes) and returns its stream header and blocks. ok is false when the
// stream is not one that parallel decoding handles (including a block
// that decodes to more than maxBlock bytes), or when it is damaged: the
// sequential decoder then reports what is wrong.
func xzBlocks(r io.ReaderAt, size, maxBlock int64) (header []byte, blocks []xzBlock, ok bool) {
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
	off, uoff := int64(xzHeaderLen), int64(0)
	for range n {
		u, err1 := binary.ReadUvarint(rd)
		c, err2 := binary.ReadUvarint(rd)
		if err1 != nil || err2 != nil || u == 0 || u > uint64(size) || c > uint64(maxBlock) {
			return nil, nil, false
		}
		blocks = append(blocks, xzBlock{off: off, unpadded: int64(u), uncompressed: int64(c), uoff: uoff})
		off += (int64(u) + 3) &^ 3
		uoff += int64(c)
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

// parallelXZ is the in-order reader of a multi-block stream decoded by
// xzWorkers goroutines into scratch.
type parallelXZ struct {
	src     io.ReaderAt
	slots   *DecoderSlots
	header  []byte
	blocks  []xzBlock
	scratch *os.File
	dictMax uint32
	stopped atomic.Bool
	wg      sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	next    int     // next block a worker takes
	cur     int     // block the reader is in
	written []int64 // decoded bytes of each block in scratch
	done    []bool  // block fully decoded and its check verified
	errs    []error

	pos int64 // of the reader in the decoded stream
	err error // sticky, for the reader
}

// newParallelXZ returns a decoder for the xz stream in r (size bytes), or
// nil when sequential decoding should be used. scratch makes the file the
// blocks are decoded into; Close closes it.
func newParallelXZ(r io.ReaderAt, size int64, l Limits, scratch func() (*os.File, error)) (io.ReadCloser, error) {
	if runtime.GOMAXPROCS(0) < 2 {
		return nil, nil // a second decoder would only add the scratch file
	}
	header, blocks, ok := xzBlocks(r, size, l.window())
	if !ok {
		return nil, nil
	}
	f, err := scratch()
	if err != nil {
		return nil, fmt.Errorf("creating the scratch file for xz blocks: %w", err)
	}
	p := &parallelXZ{
		src: r, slots: l.Decoders, header: header, blocks: blocks, scratch: f, dictMax: uint32(l.window()),
		written: make([]int64, len(blocks)), done: make([]bool, len(blocks)), errs: make([]error, len(blocks)),
	}
	p.cond = sync.NewCond(&p.mu)
	for range xzWorkers {
		p.wg.Add(1)
		go p.work()
	}
	return p, nil
}

// work decodes blocks, in index order, while the reader is no more than
// xzAhead blocks behind.
//
// A worker holds its decoder slot from before it takes its first block
// to its end: its decoder's dictionary lives that long. Blocks are taken
// only with a slot, so every block taken and not done is being decoded,
// and a reader always gets on, however the slots are shared.
func (p *parallelXZ) work() {
	defer p.wg.Done()
	slot := p.slots.acquire()
	defer p.slots.release(slot)
	br := bufio.NewReaderSize(nil, bufSize)
	buf := make([]byte, bufSize)
	for {
		p.mu.Lock()
		for !p.stopped.Load() && p.next < len(p.blocks) && p.next >= p.cur+xzAhead {
			p.cond.Wait()
		}
		if p.stopped.Load() || p.next >= len(p.blocks) {
			p.mu.Unlock()
			return
		}
		i := p.next
		p.next++
		p.mu.Unlock()
		err := p.decode(i, slot, br, buf)
		p.mu.Lock()
		if err != nil {
			p.errs[i] = fmt.Errorf("xz block at offset %d: %w", p.blocks[i].off, err)
		} else {
			p.done[i] = true
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		if err != nil {
			// The reader stops at this block; later ones are not needed.
			return
		}
	}
}

func (p *parallelXZ) decode(i int, slot *decoderSlot, br *bufio.Reader, buf []byte) error {
	b := p.blocks[i]
	br.Reset(io.MultiReader(
		bytes.NewReader(p.header),
		io.NewSectionReader(p.src, b.off, (b.unpadded+3)&^3),
		bytes.NewReader(oneBlockStream(p.header, b)),
	))
	// The slot's decoder, reset for each block: its dictionary is
	// allocated once.
	zr, err := slot.xzReader(br, p.dictMax)
	if err != nil {
		return xzErr(err, p.dictMax)
	}
	zr.Multistream(false)
	for done := int64(0); done < b.uncompressed; {
		if p.stopped.Load() {
			return errors.New("stopped")
		}
		n, err := io.ReadFull(zr, buf[:min(b.uncompressed-done, int64(len(buf)))])
		if err != nil {
			return xzErr(noEOF(err), p.dictMax)
		}
		if _, err := p.scratch.WriteAt(buf[:n], b.uoff+done); err != nil {
			return fmt.Errorf("writing the scratch file: %w", err)
		}
		done += int64(n)
		p.mu.Lock()
		p.written[i] = done
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	// Reading on to the end makes the decoder check the block's CRC and
	// the index; the block must end where its index record says.
	var one [1]byte
	switch n, err := zr.Read(one[:]); {
	case n != 0:
		return errors.New("block longer than its index record")
	case err != io.EOF:
		return xzErr(noEOF(err), p.dictMax)
	}
	return nil
}

func (p *parallelXZ) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	p.mu.Lock()
	var avail int64
	for {
		if p.cur == len(p.blocks) {
			p.mu.Unlock()
			p.err = io.EOF
			return 0, io.EOF
		}
		blk := p.blocks[p.cur]
		if avail = p.written[p.cur] - (p.pos - blk.uoff); avail > 0 {
			break
		}
		if p.done[p.cur] {
			// Read and verified: its pages are of no more use.
			punchHole(p.scratch, blk.uoff, blk.uncompressed)
			p.cur++
			p.cond.Broadcast()
			continue
		}
		if err := p.errs[p.cur]; err != nil {
			p.mu.Unlock()
			p.err = err
			return 0, err
		}
		p.cond.Wait()
	}
	p.mu.Unlock()
	n, err := p.scratch.ReadAt(b[:min(int64(len(b)), avail)], p.pos)
	p.pos += int64(n)
	if n == 0 && err != nil {
		p.err = fmt.Errorf("reading the scratch file: %w", err)
		return 0, p.err
	}
	return n, nil
}

// Close stops the decoders at their next chunk, waits for them and
// closes the scratch file, which takes its pages with it.
func (p *parallelXZ) Close() error {
	p.stopped.Store(true)
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
	return p.scratch.Close()
}

// punchHole frees the blocks of f in [off, off+n). Best effort: where the
// filesystem cannot, the scratch file keeps them until it is closed, which
// Limits.MaxUnpackedSize bounds.
func punchHole(f *os.File, off, n int64) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		})
	}
}
