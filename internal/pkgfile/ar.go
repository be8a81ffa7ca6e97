package pkgfile

import (
	"fmt"
	"io"
	"strings"
)

// A small ar(5) reader instead of github.com/blakesmith/ar: that one does
// not check the global magic or the header terminator, keeps GNU's trailing
// "/" on names and reads malformed numbers as 0, and a deb needs none of
// what it adds (long names are forbidden by deb(5)). Reading through
// io.ReaderAt lets Extract seek straight to data.tar.

const (
	arMagic     = "!<arch>\n"
	arHeaderLen = 60
)

type arMember struct {
	name   string
	offset int64 // of the member's data in the file
	size   int64
}

type arReader struct {
	r    io.ReaderAt
	size int64 // of the whole file
	pos  int64 // of the next header
}

func newArReader(r io.ReaderAt, size int64) (*arReader, error) {
	var m [len(arMagic)]byte
	if _, err := r.ReadAt(m[:], 0); err != nil || string(m[:]) != arMagic {
		return nil, fmt.Errorf("no ar magic %q", arMagic)
	}
	return &arReader{r: r, size: size, pos: int64(len(arMagic))}, nil
}

// next returns the next member, or io.EOF at the clean end of the archive.
func (a *arReader) next() (arMember, error) {
	if a.pos == a.size {
		return arMember{}, io.EOF
	}
	if a.size-a.pos < arHeaderLen {
		return arMember{}, fmt.Errorf("truncated ar header at offset %d", a.pos)
	}
	var h [arHeaderLen]byte
	if _, err := a.r.ReadAt(h[:], a.pos); err != nil {
		return arMember{}, fmt.Errorf("reading ar header at offset %d: %w", a.pos, err)
	}
	if string(h[58:60]) != "`\n" {
		return arMember{}, fmt.Errorf("bad ar header terminator at offset %d", a.pos)
	}
	name := strings.TrimRight(string(h[0:16]), " ")
	name = strings.TrimSuffix(name, "/") // GNU ar
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return arMember{}, fmt.Errorf("bad ar member name %q at offset %d", string(h[0:16]), a.pos)
	}
	for _, f := range []struct {
		what string
		b    []byte
		base int
	}{{"mtime", h[16:28], 10}, {"uid", h[28:34], 10}, {"gid", h[34:40], 10}, {"mode", h[40:48], 8}} {
		if _, ok := arNumber(f.b, f.base, true); !ok {
			return arMember{}, fmt.Errorf("ar member %s: bad %s field %q", name, f.what, f.b)
		}
	}
	size, ok := arNumber(h[48:58], 10, false)
	if !ok {
		return arMember{}, fmt.Errorf("ar member %s: bad size field %q", name, h[48:58])
	}
	m := arMember{name: name, offset: a.pos + arHeaderLen, size: size}
	end := m.offset + size
	if end > a.size {
		return arMember{}, fmt.Errorf("ar member %s is truncated: %d bytes declared, %d present", name, size, a.size-m.offset)
	}
	if size%2 == 1 {
		// Members are padded to an even offset with '\n'; a file that ends
		// without the pad byte is accepted, as dpkg does.
		if end < a.size {
			var pad [1]byte
			if _, err := a.r.ReadAt(pad[:], end); err != nil || pad[0] != '\n' {
				return arMember{}, fmt.Errorf("ar member %s: bad padding byte", name)
			}
			end++
		}
	}
	a.pos = end
	return m, nil
}

// arNumber parses a space-padded decimal or octal header field: digits,
// then only spaces. An all-blank field is 0 only when blankOK.
func arNumber(b []byte, base int, blankOK bool) (int64, bool) {
	s := strings.TrimRight(string(b), " ")
	if s == "" {
		return 0, blankOK
	}
	var n int64
	for _, c := range []byte(s) {
		d := int64(c - '0')
		if c < '0' || d >= int64(base) {
			return 0, false
		}
		if n > (1<<62)/int64(base) {
			return 0, false
		}
		n = n*int64(base) + d
	}
	return n, true
}
