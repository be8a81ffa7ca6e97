// Package pkgtest writes .deb and .rpm files in pure Go for tests: small,
// fast, and able to hold what real build tools refuse to write (duplicate
// entries, escaping names, lying sizes and digests), so hostile-input tests
// can say exactly what is wrong with a package.
//
// The output follows deb(5) and rpm's file format closely enough for
// internal/pkgfile; it is not meant to be installed. rpm headers carry no
// region tags, so rpm(8) itself may warn about them.
package pkgtest

import (
	"archive/tar"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// File is one archive entry.
type File struct {
	Name     string // as written into the archive, e.g. "./usr/bin/kubelet"
	Body     []byte
	Mode     int64 // permission bits; 0 means 0755 for files, 0777 for links
	Type     byte  // tar type flag: tar.TypeReg (default), TypeSymlink, TypeLink, TypeDir
	Linkname string
	// Digest, if set, replaces the digest computed from Body in the
	// package's metadata (md5sums, rpm FILEDIGESTS): "" keeps the real one.
	Digest string
}

func (f File) mode() int64 {
	if f.Mode != 0 {
		return f.Mode
	}
	if f.Type == tar.TypeSymlink {
		return 0o777
	}
	if f.Type == tar.TypeDir {
		return 0o755
	}
	return 0o755
}

// Compress compresses b with "gzip", "xz", "zstd" or "none".
func Compress(comp string, b []byte) ([]byte, error) {
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch comp {
	case "none", "":
		return b, nil
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	case "zstd":
		w, err = zstd.NewWriter(&buf)
	default:
		return nil, fmt.Errorf("pkgtest cannot write %s", comp)
	}
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Tar writes files as a GNU tar archive, in order, as dpkg-deb does.
func Tar(files []File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.Name, Typeflag: typ, Mode: f.mode(), Linkname: f.Linkname, Format: tar.FormatGNU, Uname: "root", Gname: "root"}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err) // only for names tar cannot hold; a bug in the test
		}
		tw.Write(f.Body)
	}
	tw.Close()
	return buf.Bytes()
}

// ArMember is one member of an ar archive.
type ArMember struct {
	Name string
	Body []byte
}

// Ar writes an ar archive in the GNU layout dpkg-deb uses.
func Ar(members []ArMember) []byte {
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.Name, 0, 0, 0, 0o100644, len(m.Body))
		buf.Write(m.Body)
		if len(m.Body)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// Deb describes a .deb.
type Deb struct {
	Name, Version, Arch string // defaults: kubelet, 1.34.10-1.1, amd64
	Depends             string
	Control             string // full control file; overrides the fields above
	Files               []File // data.tar entries
	Compression         string // of data.tar and control.tar: gzip (default), xz, zstd, none
	NoMD5Sums           bool
}

// Members returns the ar members of the package, for tests that reorder,
// drop or corrupt them.
func (d Deb) Members() ([]ArMember, error) {
	comp := cmp(d.Compression, "gzip")
	control := d.Control
	if control == "" {
		control = fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@example.com>\nDescription: test\n",
			cmp(d.Name, "kubelet"), cmp(d.Version, "1.34.10-1.1"), cmp(d.Arch, "amd64"))
		if d.Depends != "" {
			control += "Depends: " + d.Depends + "\n"
		}
	}
	cfiles := []File{{Name: "./", Type: tar.TypeDir}, {Name: "./control", Body: []byte(control), Mode: 0o644}}
	if !d.NoMD5Sums {
		var sums strings.Builder
		for _, f := range d.Files {
			if f.Type != 0 && f.Type != tar.TypeReg {
				continue
			}
			sum := f.Digest
			if sum == "" {
				s := md5.Sum(f.Body)
				sum = hex.EncodeToString(s[:])
			}
			fmt.Fprintf(&sums, "%s  %s\n", sum, strings.TrimPrefix(strings.TrimPrefix(f.Name, "."), "/"))
		}
		cfiles = append(cfiles, File{Name: "./md5sums", Body: []byte(sums.String()), Mode: 0o644})
	}
	ctl, err := Compress(comp, Tar(cfiles))
	if err != nil {
		return nil, err
	}
	data, err := Compress(comp, Tar(d.Files))
	if err != nil {
		return nil, err
	}
	return []ArMember{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar" + suffix(comp), ctl},
		{"data.tar" + suffix(comp), data},
	}, nil
}

// Bytes returns the .deb file.
func (d Deb) Bytes() ([]byte, error) {
	m, err := d.Members()
	if err != nil {
		return nil, err
	}
	return Ar(m), nil
}

// suffix is the member-name suffix dpkg uses for a compression.
func suffix(comp string) string {
	return map[string]string{"gzip": ".gz", "xz": ".xz", "zstd": ".zst", "bzip2": ".bz2", "lzma": ".lzma"}[comp]
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// RPM describes an .rpm.
type RPM struct {
	Name, Version, Release, Arch string // defaults: kubelet, 1.34.10, 1.azl3, x86_64
	Epoch                        int    // written when > 0
	Requires                     []string
	// Files are listed in the header; Payload, when non-nil, is what the
	// cpio payload holds instead (to make the two disagree).
	Files       []File
	Payload     []File
	Compression string // gzip (default), xz, zstd, none
	// AbsoluteNames writes cpio names as rpmpack does ("/usr/bin/x")
	// instead of rpmbuild's "./usr/bin/x".
	AbsoluteNames bool
	// Lie about digests and sizes: non-empty values replace the real ones.
	HeaderSHA256, PayloadDigest string
	SizeDelta                   int64 // added to the signature's header+payload size
}

const (
	rpmString      = 6
	rpmStringArray = 8
	rpmInt16       = 3
	rpmInt32       = 4
	rpmBin         = 7
)

type rpmEntry struct {
	tag, typ int
	val      any // string, []string, []uint16, []uint32, []byte
}

// Bytes returns the .rpm file.
func (r RPM) Bytes() ([]byte, error) {
	comp := cmp(r.Compression, "gzip")
	payloadFiles := r.Payload
	if payloadFiles == nil {
		payloadFiles = r.Files
	}
	cpio := cpioArchive(payloadFiles, r.AbsoluteNames)
	payload, err := Compress(comp, cpio)
	if err != nil {
		return nil, err
	}
	psum := sha256.Sum256(payload)
	pdigest := cmp(r.PayloadDigest, hex.EncodeToString(psum[:]))

	var dirs, bases, digests, links []string
	var dirIdx, sizes []uint32
	var modes []uint16
	for _, f := range r.Files {
		full := "/" + strings.TrimPrefix(strings.TrimPrefix(f.Name, "."), "/")
		i := strings.LastIndexByte(full, '/')
		dir, base := full[:i+1], full[i+1:]
		di := slices.Index(dirs, dir)
		if di < 0 {
			di = len(dirs)
			dirs = append(dirs, dir)
		}
		dirIdx = append(dirIdx, uint32(di))
		bases = append(bases, base)
		typeBits := map[byte]uint16{0: 0o100000, tar.TypeReg: 0o100000, tar.TypeSymlink: 0o120000, tar.TypeDir: 0o040000, tar.TypeLink: 0o100000}[f.Type]
		modes = append(modes, typeBits|uint16(f.mode()))
		links = append(links, f.Linkname)
		d := f.Digest
		if d == "" && (f.Type == 0 || f.Type == tar.TypeReg) {
			s := sha256.Sum256(f.Body)
			d = hex.EncodeToString(s[:])
		}
		digests = append(digests, d)
		if f.Type == tar.TypeSymlink {
			sizes = append(sizes, uint32(len(f.Linkname)))
		} else {
			sizes = append(sizes, uint32(len(f.Body)))
		}
	}
	var reqs []string
	reqs = append(reqs, r.Requires...)
	ents := []rpmEntry{
		{1000, rpmString, cmp(r.Name, "kubelet")},
		{1001, rpmString, cmp(r.Version, "1.34.10")},
		{1002, rpmString, cmp(r.Release, "1.azl3")},
		{1022, rpmString, cmp(r.Arch, "x86_64")},
		{1124, rpmString, "cpio"},
		{1125, rpmString, comp},
		{5011, rpmInt32, []uint32{8}},
		{5092, rpmStringArray, []string{pdigest}},
		{5093, rpmInt32, []uint32{8}},
	}
	if r.Epoch > 0 {
		ents = append(ents, rpmEntry{1003, rpmInt32, []uint32{uint32(r.Epoch)}})
	}
	if comp == "none" {
		ents = slices.Delete(ents, 5, 6) // rpmbuild writes no compressor tag for w.ufdio
	}
	if len(reqs) > 0 {
		flags := make([]uint32, len(reqs))
		vers := make([]string, len(reqs))
		ents = append(ents, rpmEntry{1049, rpmStringArray, reqs}, rpmEntry{1048, rpmInt32, flags}, rpmEntry{1050, rpmStringArray, vers})
	}
	if len(r.Files) > 0 {
		ents = append(ents,
			rpmEntry{1028, rpmInt32, sizes},
			rpmEntry{1030, rpmInt16, modes},
			rpmEntry{1035, rpmStringArray, digests},
			rpmEntry{1036, rpmStringArray, links},
			rpmEntry{1116, rpmInt32, dirIdx},
			rpmEntry{1117, rpmStringArray, bases},
			rpmEntry{1118, rpmStringArray, dirs},
		)
	}
	hdr := rpmHeader(ents)
	hsum := sha256.Sum256(hdr)
	sig := rpmHeader([]rpmEntry{
		{1000, rpmInt32, []uint32{uint32(int64(len(hdr)+len(payload)) + r.SizeDelta)}},
		{273, rpmString, cmp(r.HeaderSHA256, hex.EncodeToString(hsum[:]))},
	})
	var out bytes.Buffer
	lead := make([]byte, 96)
	copy(lead, "\xed\xab\xee\xdb\x03\x00")
	copy(lead[10:], cmp(r.Name, "kubelet"))
	lead[79] = 5 // signature type: header-style
	out.Write(lead)
	out.Write(sig)
	out.Write(make([]byte, (8-len(sig)%8)%8))
	out.Write(hdr)
	out.Write(payload)
	return out.Bytes(), nil
}

func rpmHeader(ents []rpmEntry) []byte {
	slices.SortFunc(ents, func(a, b rpmEntry) int { return a.tag - b.tag })
	var index, store bytes.Buffer
	for _, e := range ents {
		align := map[int]int{rpmInt16: 2, rpmInt32: 4}[e.typ]
		for align > 0 && store.Len()%align != 0 {
			store.WriteByte(0)
		}
		off := store.Len()
		count := 1
		switch v := e.val.(type) {
		case string:
			store.WriteString(v)
			store.WriteByte(0)
		case []string:
			count = len(v)
			for _, s := range v {
				store.WriteString(s)
				store.WriteByte(0)
			}
		case []uint16:
			count = len(v)
			binary.Write(&store, binary.BigEndian, v)
		case []uint32:
			count = len(v)
			binary.Write(&store, binary.BigEndian, v)
		case []byte:
			count = len(v)
			store.Write(v)
		}
		binary.Write(&index, binary.BigEndian, []int32{int32(e.tag), int32(e.typ), int32(off), int32(count)})
	}
	var out bytes.Buffer
	out.WriteString("\x8e\xad\xe8\x01\x00\x00\x00\x00")
	binary.Write(&out, binary.BigEndian, []uint32{uint32(len(ents)), uint32(store.Len())})
	out.Write(index.Bytes())
	out.Write(store.Bytes())
	return out.Bytes()
}

// cpioArchive writes files as a newc cpio archive the way rpmbuild does.
func cpioArchive(files []File, absolute bool) []byte {
	var buf bytes.Buffer
	write := func(name string, mode uint32, nlink int, body []byte) {
		fmt.Fprintf(&buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			1, mode, 0, 0, nlink, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
		buf.WriteString(name)
		buf.WriteByte(0)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
		buf.Write(body)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	for _, f := range files {
		name := "./" + strings.TrimPrefix(strings.TrimPrefix(f.Name, "."), "/")
		if absolute {
			name = name[1:]
		}
		if strings.Contains(f.Name, "..") || strings.HasPrefix(f.Name, "//") {
			name = f.Name // hostile names go in as given
		}
		mode := uint32(f.mode())
		body := f.Body
		switch f.Type {
		case tar.TypeSymlink:
			mode |= 0o120000
			body = []byte(f.Linkname)
		case tar.TypeDir:
			mode |= 0o040000
		default:
			mode |= 0o100000
		}
		write(name, mode, 1, body)
	}
	write("TRAILER!!!", 0, 1, nil)
	return buf.Bytes()
}
