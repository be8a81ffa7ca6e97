package pkgfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// asyncMin is the entry size from which copyEntry writes on a second
// goroutine. Below it a goroutine costs more than it saves.
const asyncMin = 4 << 20

// copyEntry copies exactly size bytes of an entry from r to w, feeding
// sum on the way and verifying it at the end.
func (p *Package) copyEntry(w io.Writer, r io.Reader, name string, size int64, sum *hashCheck, member string) error {
	sinks := []io.Writer{w}
	if pw, ok := w.(interface{ Parts() (io.Writer, io.Writer) }); ok && size >= asyncMin {
		// rootfs.Writer: the file and its SHA-256 each on a goroutine of
		// their own, off the decoder's.
		file, hash := pw.Parts()
		sinks = []io.Writer{file, hash}
	}
	if sum != nil {
		sinks = append(sinks, sum.h)
	}
	var n int64
	var rerr, werr error
	if size >= asyncMin {
		n, rerr, werr = copyAsync(r, size, sinks...)
	} else {
		n, rerr, werr = copySync(io.MultiWriter(sinks...), r, size)
	}
	if werr != nil {
		return fmt.Errorf("writing %s from %s: %w", name, p.Path, werr)
	}
	if rerr != nil {
		if errors.Is(rerr, errTooLarge) {
			return p.errf(ErrTooLarge, member, nil, "%v", rerr)
		}
		return p.errf(ErrCorrupt, name, noEOF(rerr), "%d of %d declared bytes read", n, size)
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.h.Sum(nil)); got != sum.want {
			return p.errf(ErrDigest, name, nil, "content has digest %s, %s declares %s", got, sum.from, sum.want)
		}
	}
	return nil
}

// copySync reads exactly n bytes from r into w.
func copySync(w io.Writer, r io.Reader, n int64) (done int64, rerr, werr error) {
	buf := make([]byte, min(bufSize, max(n, 1)))
	for done < n {
		k, err := io.ReadFull(r, buf[:min(int64(len(buf)), n-done)])
		if k > 0 {
			if _, err := w.Write(buf[:k]); err != nil {
				return done, nil, err
			}
			done += int64(k)
		}
		if err != nil {
			return done, err, nil
		}
	}
	return done, nil, nil
}

// copyAsync is copySync with each sink on its own goroutine: decompressing
// here while the file, its SHA-256 and the package's digest consume the
// same chunks elsewhere. A chunk is reused once every sink is
// done with it.
func copyAsync(r io.Reader, n int64, sinks ...io.Writer) (done int64, rerr, werr error) {
	f := newFanout(sinks)
	for done < n && rerr == nil {
		c := f.chunk()
		k, err := io.ReadFull(r, c.buf[:min(int64(len(c.buf)), n-done)])
		if k == 0 {
			f.release(c)
		} else if !f.send(c, k) {
			break
		}
		done += int64(k)
		rerr = err
	}
	werr = f.close()
	return done, rerr, werr
}

type chunk struct {
	buf  []byte
	n    int
	refs atomic.Int32
}

// fanout hands each chunk to every sink's goroutine.
type fanout struct {
	sinks  []chan *chunk
	free   chan *chunk
	wg     sync.WaitGroup
	failed atomic.Bool
	mu     sync.Mutex
	err    error
}

// fanoutChunks of bufSize each: enough to absorb the decoder's bursts.
const fanoutChunks = 8

func newFanout(sinks []io.Writer) *fanout {
	f := &fanout{free: make(chan *chunk, fanoutChunks)}
	for range fanoutChunks {
		f.free <- &chunk{buf: make([]byte, bufSize)}
	}
	for _, w := range sinks {
		ch := make(chan *chunk, fanoutChunks)
		f.sinks = append(f.sinks, ch)
		f.wg.Add(1)
		go f.loop(w, ch)
	}
	return f
}

func (f *fanout) loop(w io.Writer, ch <-chan *chunk) {
	defer f.wg.Done()
	for c := range ch {
		if !f.failed.Load() {
			if _, err := w.Write(c.buf[:c.n]); err != nil {
				f.mu.Lock()
				if f.err == nil {
					f.err = err
				}
				f.mu.Unlock()
				f.failed.Store(true)
			}
		}
		if c.refs.Add(-1) == 0 {
			f.free <- c
		}
	}
}

func (f *fanout) chunk() *chunk    { return <-f.free }
func (f *fanout) release(c *chunk) { f.free <- c }

// send queues the first n bytes of c to every sink, and reports false once
// a sink has failed, so the caller stops decompressing for nothing.
func (f *fanout) send(c *chunk, n int) bool {
	if f.failed.Load() {
		f.release(c)
		return false
	}
	c.n = n
	c.refs.Store(int32(len(f.sinks)))
	for _, s := range f.sinks {
		s <- c
	}
	return true
}

// close waits for every sink and returns the first write error.
func (f *fanout) close() error {
	for _, s := range f.sinks {
		close(s)
	}
	f.wg.Wait()
	return f.err
}
