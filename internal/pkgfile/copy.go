package pkgfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// asyncMin is the entry size from which copyEntry writes on a second
// goroutine. Below it a goroutine costs more than it saves.
const asyncMin = 4 << 20

// copyEntry copies exactly size bytes of an entry from r to w, feeding
// sum on the way and verifying it at the end.
func (p *Package) copyEntry(w io.Writer, r io.Reader, name string, size int64, sum *hashCheck, member string) error {
	dst := w
	if sum != nil {
		dst = io.MultiWriter(sum.h, w)
	}
	var n int64
	var rerr, werr error
	if size >= asyncMin {
		n, rerr, werr = copyAsync(dst, r, size)
	} else {
		n, rerr, werr = copySync(dst, r, size)
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

// copyAsync is copySync with the writes (and the hashing inside w) on a
// second goroutine: decompressing here while hashing and writing there puts
// both cores of a small node to work, and for gzip and zstd the two halves
// cost about the same.
func copyAsync(w io.Writer, r io.Reader, n int64) (done int64, rerr, werr error) {
	a := newAsyncWriter(w)
	for done < n && rerr == nil {
		buf := a.buffer()
		k, err := io.ReadFull(r, buf[:min(int64(len(buf)), n-done)])
		if k == 0 {
			a.release(buf)
		} else if !a.write(buf[:k]) {
			break
		}
		done += int64(k)
		rerr = err
	}
	werr = a.close()
	return done, rerr, werr
}

// asyncWriter writes on its own goroutine the buffers handed to write.
type asyncWriter struct {
	w      io.Writer
	full   chan []byte
	free   chan []byte
	done   chan struct{}
	failed atomic.Bool
	err    error // set by loop before failed, read after
}

// asyncBuffers of bufSize each: enough to absorb the decoder's bursts.
const asyncBuffers = 4

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, full: make(chan []byte, asyncBuffers), free: make(chan []byte, asyncBuffers), done: make(chan struct{})}
	for range asyncBuffers {
		a.free <- make([]byte, bufSize)
	}
	go a.loop()
	return a
}

func (a *asyncWriter) loop() {
	defer close(a.done)
	for b := range a.full {
		if a.err == nil {
			if _, err := a.w.Write(b); err != nil {
				a.err = err
				a.failed.Store(true)
			}
		}
		a.free <- b[:cap(b)]
	}
}

func (a *asyncWriter) buffer() []byte   { return <-a.free }
func (a *asyncWriter) release(b []byte) { a.free <- b[:cap(b)] }

// write queues b, which must come from buffer(), and reports false once a
// write has failed, so the caller stops decompressing for nothing.
func (a *asyncWriter) write(b []byte) bool {
	if a.failed.Load() {
		a.release(b)
		return false
	}
	a.full <- b
	return true
}

// close waits for the queued writes and returns the first error.
func (a *asyncWriter) close() error {
	close(a.full)
	<-a.done
	return a.err
}
