package xz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// xzTool compresses data with the xz binary and args.
func xzTool(t testing.TB, data []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skip("skipping: no xz binary (set CI=true to make this a failure)")
		}
		t.Fatal(err)
	}
	cmd := exec.Command("xz", append([]string{"-c", "-T1"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// sample returns real content: the test binary itself, which holds code,
// tables and strings as the packages' binaries do; sampleBytes n bytes of
// its middle.
var sample = sync.OnceValue(func() []byte {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		panic(err)
	}
	return b
})

func sampleBytes(t testing.TB, n int) []byte {
	b := sample()
	if len(b) < n {
		t.Fatalf("test binary of %d bytes, want %d", len(b), n)
	}
	return b[len(b)/2-n/2:][:n]
}

func decodeAll(in []byte, dictMax uint32) ([]byte, error) {
	z, err := NewReader(bytes.NewReader(in), dictMax)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(z)
}

func TestDecodeXZTool(t *testing.T) {
	exe := sampleBytes(t, 512<<10)
	random := make([]byte, 200<<10)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(random)
	tests := []struct {
		name string
		data []byte
		args []string
	}{
		{"preset 0", exe, []string{"-0"}},
		{"preset 6", exe, []string{"-6"}},
		{"preset 9", exe, []string{"-9"}},
		{"preset 6e", exe[:128<<10], []string{"-6e"}},
		{"check none", exe, []string{"-1", "--check=none"}},
		{"check crc32", exe, []string{"-1", "--check=crc32"}},
		{"check crc64", exe, []string{"-1", "--check=crc64"}},
		{"check sha256", exe, []string{"-1", "--check=sha256"}},
		{"blocks", exe, []string{"-1", "--block-size=100KiB"}},
		{"threads, sizes in headers", exe, []string{"-1", "-T2", "--block-size=100KiB"}},
		// A 64 KiB dictionary wraps around several times.
		{"small dictionary", exe, []string{"--lzma2=preset=6,dict=64KiB"}},
		{"lc0 lp4 pb0", exe, []string{"--lzma2=preset=1,dict=64KiB,lc=0,lp=4,pb=0"}},
		{"lc4 lp0 pb4", exe, []string{"--lzma2=preset=1,dict=64KiB,lc=4,lp=0,pb=4"}},
		{"incompressible (uncompressed chunks)", random, []string{"-6"}},
		{"mixed chunks", append(bytes.Clone(random[:100<<10]), exe[:100<<10]...), []string{"-6"}},
		{"zeros (long overlapping matches)", make([]byte, 3<<20), []string{"-6"}},
		{"zeros, matches across the window's end", make([]byte, 1<<20), []string{"--lzma2=preset=6,dict=64KiB"}},
		{"one byte", []byte{'x'}, []string{"-6"}},
		{"empty", nil, []string{"-6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAll(xzTool(t, tt.data, tt.args...), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Fatalf("decoded %d bytes that differ from the %d compressed", len(got), len(tt.data))
			}
		})
	}
}

// The Reader behaves as an io.Reader should whatever the sizes of the
// reads on either side: one byte at a time from the source (every header
// and chunk arrives in pieces), and every kind of read iotest makes.
func TestReadSizes(t *testing.T) {
	data := sampleBytes(t, 200<<10)
	s := xzTool(t, data, "-6", "--block-size=50KiB", "--check=sha256")
	z, err := NewReader(iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(s))), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(z); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("from a one-byte reader: %v, %d bytes, want %d", err, len(got), len(data))
	}
	if z, err = NewReader(bytes.NewReader(s), 0); err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(z, data); err != nil {
		t.Fatal(err)
	}
}

// Concatenated streams, with and without stream padding between them,
// decode to the concatenation; Multistream(false) stops after the first.
func TestMultistream(t *testing.T) {
	a, b := sampleBytes(t, 100<<10), []byte("second stream")
	xa, xb := xzTool(t, a, "-1"), xzTool(t, b, "-1", "--check=sha256")
	tests := []struct {
		name string
		in   []byte
	}{
		{"two streams", cat(xa, xb)},
		{"padding between", cat(xa, make([]byte, 8), xb)},
		{"padding after", cat(xa, xb, make([]byte, 4))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAll(tt.in, 0)
			if err != nil || !bytes.Equal(got, cat(a, b)) {
				t.Fatalf("%v, %d bytes, want %d", err, len(got), len(a)+len(b))
			}
			z, err := NewReader(bytes.NewReader(tt.in), 0)
			if err != nil {
				t.Fatal(err)
			}
			z.Multistream(false)
			if got, err := io.ReadAll(z); err != nil || !bytes.Equal(got, a) {
				t.Fatalf("Multistream(false): %v, %d bytes, want %d", err, len(got), len(a))
			}
		})
	}
}

func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// One Reader, reset for every stream, decodes each and allocates nothing
// once its dictionary is as large as the streams need.
func TestResetReuse(t *testing.T) {
	data := sampleBytes(t, 300<<10)
	streams := [][]byte{
		xzTool(t, data, "--lzma2=preset=6,dict=256KiB"),
		xzTool(t, data[:1000], "--lzma2=preset=1,dict=128KiB", "--check=sha256"),
		xzTool(t, data, "--lzma2=preset=1,dict=256KiB", "--block-size=64KiB", "--check=crc32"),
	}
	z, err := NewReader(bytes.NewReader(streams[0]), 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var out bytes.Buffer
	out.Grow(len(data))
	decode := func(s []byte) {
		out.Reset()
		if err := z.Reset(bytes.NewReader(s)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyBuffer(&out, z, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range streams {
		decode(s)
		if want := [][]byte{data, data[:1000], data}[i]; !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("stream %d: %d bytes, want %d", i, out.Len(), len(want))
		}
	}
	// bytes.NewReader is the only allocation.
	if n := testing.AllocsPerRun(5, func() { decode(streams[2]) }); n > 1 {
		t.Errorf("Reset and decode of a 5-block stream: %v allocations, want at most 1", n)
	}
}

func TestMemlimit(t *testing.T) {
	s := xzTool(t, []byte("hello"), "--lzma2=preset=1,dict=2MiB")
	_, err := decodeAll(s, 1<<20)
	if !errors.Is(err, ErrMemlimit) {
		t.Fatalf("err = %v, want ErrMemlimit", err)
	}
	if got, err := decodeAll(s, 2<<20); err != nil || string(got) != "hello" {
		t.Fatalf("with a 2 MiB limit: %q, %v", got, err)
	}
}

// Filters other than LZMA2 are refused, by name.
func TestFilters(t *testing.T) {
	data := sampleBytes(t, 4096)
	for _, tt := range []struct{ arg, want string }{
		{"--x86", "filter 0x04 (x86 BCJ)"},
		{"--arm64", "filter 0x0a (ARM64 BCJ)"},
		{"--delta=dist=4", "filter 0x03 (delta)"},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			_, err := decodeAll(xzTool(t, data, tt.arg, "--lzma2=preset=1"), 0)
			if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrOptions naming %s", err, tt.want)
			}
		})
	}
}

// setCheck rewrites the check ID in a stream's header and footer, with
// their CRC32s, as an encoder of that check would write them.
func setCheck(s []byte, id byte) []byte {
	s = bytes.Clone(s)
	s[7] = id
	binary.LittleEndian.PutUint32(s[8:], crc32.ChecksumIEEE(s[6:8]))
	f := s[len(s)-headerLen:]
	f[9] = id
	binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
	return s
}

// setIndex replaces the index of a stream that has no blocks.
func setIndex(s []byte, index []byte) []byte {
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	f := bytes.Clone(s[len(s)-headerLen:])
	binary.LittleEndian.PutUint32(f[4:], uint32(len(index)/4-1))
	binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
	return cat(s[:headerLen], index, f)
}

// Every kind of damage is an error, never a panic nor wrong data.
func TestCorrupt(t *testing.T) {
	data := sampleBytes(t, 64<<10)
	good := xzTool(t, data, "-6", "--check=crc64")
	crc32s := xzTool(t, data, "-1", "--check=crc32")
	empty := xzTool(t, nil)
	footer := len(good) - headerLen
	indexSize := (int(binary.LittleEndian.Uint32(good[footer+4:])) + 1) * 4
	index := footer - indexSize
	check := index - 8
	flip := func(s []byte, i int) []byte {
		s = bytes.Clone(s)
		s[i] ^= 0x10
		return s
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"magic", flip(good, 0), ErrFormat},
		{"stream flags", flip(good, 7), ErrData}, // its CRC32 first
		{"stream header CRC32", flip(good, 9), ErrData},
		{"block header", flip(good, 13), ErrData},
		{"payload start", flip(good, 24), ErrData},
		{"payload middle", flip(good, check/2), ErrData},
		{"payload end", flip(good, check-3), ErrData},
		{"check", flip(good, check+2), ErrData},
		{"index", flip(good, index+2), ErrData},
		{"index CRC32", flip(good, footer-2), ErrData},
		{"footer CRC32", flip(good, footer+1), ErrData},
		{"footer backward size", flip(good, footer+4), ErrData},
		{"footer flags", flip(good, footer+9), ErrData},
		{"footer magic", flip(good, len(good)-1), ErrData},
		{"unknown check", setCheck(crc32s, 0x02), ErrUnsupportedCheck},
		{"check ID mismatch", setCheck(crc32s, byte(CheckCRC64)), ErrData},
		{"index of 2^60 records", setIndex(empty, binary.AppendUvarint([]byte{0}, 1<<60)), ErrData},
		{"trailing garbage", cat(good, []byte("garbage!")), ErrFormat},
		{"padding not a multiple of 4", cat(good, []byte{0, 0, 0}), ErrData},
		{"truncated header", good[:10], io.ErrUnexpectedEOF},
		{"truncated payload", good[:len(good)/2], io.ErrUnexpectedEOF},
		{"truncated footer", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"no footer", good[:footer], io.ErrUnexpectedEOF},
		{"empty input", nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAll(tt.in, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v (%d bytes decoded), want %v", err, len(got), tt.want)
			}
		})
	}
}

// Every truncation and every single-byte change of a small multi-block
// stream fails. The content is text: in a run of zeros, a changed lc or
// lp can legitimately decode to the same bytes.
func TestEveryByte(t *testing.T) {
	src, err := os.ReadFile("lzma.go")
	if err != nil {
		t.Fatal(err)
	}
	data := src[:3000]
	s := xzTool(t, data, "-1", "--block-size=1000")
	for n := range len(s) {
		if _, err := decodeAll(s[:n], 0); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(s))
		}
	}
	for i := range s {
		c := bytes.Clone(s)
		c[i] ^= 0x01
		if got, err := decodeAll(c, 0); err == nil {
			t.Fatalf("byte %d of %d changed: no error, %d bytes (equal: %v)", i, len(s), len(got), bytes.Equal(got, data))
		}
	}
}

// A block header declaring fewer bytes than the block decodes to fails
// before the dictionary fills; the window is sized by that declaration.
func TestDeclaredSizes(t *testing.T) {
	s := xzTool(t, sampleBytes(t, 200<<10), "-1", "-T2", "--block-size=100KiB")
	z, err := NewReader(bytes.NewReader(s), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(z); err != nil {
		t.Fatal(err)
	}
	if n := len(z.lz.w.buf); n > 100<<10+15+windowSlack {
		t.Errorf("window of %d bytes for blocks of 100 KiB", n)
	}
}

func FuzzReader(f *testing.F) {
	// Small seeds: the fuzzer minimises every new input, exec by exec.
	data := sampleBytes(f, 4<<10)
	for _, args := range [][]string{
		{"-0"}, {"-6", "--check=sha256"}, {"-1", "--check=none"}, {"-1", "--check=crc32", "--block-size=4KiB"},
		{"--lzma2=preset=1,dict=4KiB,lc=0,lp=2,pb=1"},
	} {
		s := xzTool(f, data, args...)
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(s[:len(s)-4])
	}
	f.Add(xzTool(f, nil))
	f.Add(cat(xzTool(f, []byte("a")), make([]byte, 4), xzTool(f, []byte("b"))))
	f.Fuzz(func(t *testing.T, in []byte) {
		z, err := NewReader(bytes.NewReader(in), 1<<20)
		if err != nil {
			return
		}
		// A few bytes can claim many megabytes, which the coverage
		// instrumentation makes seconds: 1 MiB exercises every path.
		io.Copy(io.Discard, io.LimitReader(z, 1<<20))
	})
}
