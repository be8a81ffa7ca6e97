package pkgfile

import (
	"fmt"
	"io"
)

// A reader of the cpio "newc" archives inside RPM payloads, written here
// rather than taken from go-rpmutils because that one skips an unread entry
// by allocating a buffer as large as the entry and parses numbers
// leniently. Entries are skipped by streaming to io.Discard.

const cpioHeaderLen = 110

type cpioHeader struct {
	name  string
	mode  uint32
	nlink uint32
	size  int64
}

type cpioReader struct {
	r      io.Reader
	remain int64 // unread bytes of the current entry's data
	pad    int64 // padding after them
	// stripped resolves the index of a stripped header to name, mode and
	// size from the rpm header; nil refuses stripped headers.
	stripped func(index int) (cpioHeader, bool)
	buf      [cpioHeaderLen]byte
}

// next skips the rest of the current entry and reads the next header. It
// returns io.EOF at the trailer; running out of input before it is
// io.ErrUnexpectedEOF.
func (c *cpioReader) next() (cpioHeader, error) {
	if n := c.remain + c.pad; n > 0 {
		if _, err := io.CopyN(io.Discard, c.r, n); err != nil {
			return cpioHeader{}, noEOF(err)
		}
		c.remain, c.pad = 0, 0
	}
	b := c.buf[:]
	if _, err := io.ReadFull(c.r, b[:6]); err != nil {
		return cpioHeader{}, noEOF(err)
	}
	switch string(b[:6]) {
	case "070701", "070702":
	case "07070X":
		return c.nextStripped()
	default:
		return cpioHeader{}, fmt.Errorf("bad cpio magic %q", b[:6])
	}
	if _, err := io.ReadFull(c.r, b[6:]); err != nil {
		return cpioHeader{}, noEOF(err)
	}
	var f [13]uint32
	for i := range f {
		v, ok := hex8(b[6+8*i : 14+8*i])
		if !ok {
			return cpioHeader{}, fmt.Errorf("bad cpio header field %q", b[6+8*i:14+8*i])
		}
		f[i] = v
	}
	h := cpioHeader{mode: f[1], nlink: f[4], size: int64(f[6])}
	namesize := int64(f[11])
	if namesize < 2 || namesize > 4096 {
		return cpioHeader{}, fmt.Errorf("bad cpio name size %d", namesize)
	}
	name := make([]byte, namesize+pad4(cpioHeaderLen+namesize))
	if _, err := io.ReadFull(c.r, name); err != nil {
		return cpioHeader{}, noEOF(err)
	}
	if name[namesize-1] != 0 {
		return cpioHeader{}, fmt.Errorf("cpio name is not NUL-terminated")
	}
	h.name = string(name[:namesize-1])
	if h.name == "TRAILER!!!" {
		return cpioHeader{}, io.EOF
	}
	c.remain, c.pad = h.size, pad4(h.size)
	return h, nil
}

func (c *cpioReader) nextStripped() (cpioHeader, error) {
	var b [8 + 2]byte // index, then padding to 4 (6 + 8 + 2)
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return cpioHeader{}, noEOF(err)
	}
	idx, ok := hex8(b[:8])
	if !ok {
		return cpioHeader{}, fmt.Errorf("bad stripped cpio index %q", b[:8])
	}
	if c.stripped == nil {
		return cpioHeader{}, fmt.Errorf("stripped cpio header outside an rpm payload")
	}
	h, ok := c.stripped(int(idx))
	if !ok {
		return cpioHeader{}, fmt.Errorf("stripped cpio header: file index %d out of range", idx)
	}
	c.remain, c.pad = h.size, pad4(h.size)
	return h, nil
}

// Read reads the current entry's data.
func (c *cpioReader) Read(p []byte) (int, error) {
	if c.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.r.Read(p)
	c.remain -= int64(n)
	if err == io.EOF && c.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

func hex8(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}
