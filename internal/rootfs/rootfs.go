// Package rootfs writes files under a root directory so that a target path
// never holds a partial file: every write goes to a temp file in the target's
// directory, is fsynced, renamed into place, and the directory is fsynced.
package rootfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// TempPrefix starts the name of every temp file this package creates, so a
// run after a crash can recognise and remove what the crashed run left.
const TempPrefix = ".reconcile-tmp-"

// Result describes a file written by WriteAtomic.
type Result struct {
	Size   int64
	SHA256 string // lower-case hex
}

// WriteAtomic creates or replaces name (slash-separated, relative to root)
// with what fill writes, mode perm, owned by root:root when running as root.
// On any error the target keeps its previous content and no temp file stays.
func WriteAtomic(root *os.Root, name string, perm fs.FileMode, fill func(io.Writer) error) (Result, error) {
	return WriteChecked(root, name, perm, fill, nil)
}

// WriteChecked is WriteAtomic with a last word: check sees the size and
// digest of what fill wrote and may refuse it before it replaces name (a
// package's declared digest compared with the one computed while writing,
// without reading the file twice).
//
// fill gets a *Writer. Writeback of the temp file starts every 8 MiB, so
// the fsync before the rename waits for the last few MiB only, not for
// all of a 100 MiB binary at once.
func WriteChecked(root *os.Root, name string, perm fs.FileMode, fill func(io.Writer) error, check func(Result) error) (res Result, err error) {
	f, tmp, err := CreateTemp(root, name)
	if err != nil {
		return res, err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			root.Remove(tmp)
		}
	}()
	w := &Writer{file: fileWriter{f: f}, hash: sha256.New()}
	if err = fill(w); err != nil {
		return res, err
	}
	res = Result{Size: w.file.n, SHA256: hex.EncodeToString(w.hash.Sum(nil))}
	if check != nil {
		if err = check(res); err != nil {
			return Result{}, err
		}
	}
	if err = f.Sync(); err != nil {
		return res, fmt.Errorf("syncing %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		f = nil
		return res, fmt.Errorf("closing %s: %w", name, err)
	}
	f = nil
	if err = SetOwnerMode(root, tmp, perm); err != nil {
		return res, err
	}
	if err = Rename(root, tmp, name); err != nil {
		return Result{}, err
	}
	return res, nil
}

// CreateTemp creates an empty file, mode 0600, open for reading and
// writing, beside name (slash-separated, relative to root; its directory is
// created), and returns it with its root-relative name. Its name starts
// with TempPrefix, so a run after a crash removes it.
func CreateTemp(root *os.Root, name string) (*os.File, string, error) {
	dir := path.Dir(name)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := path.Join(dir, TempPrefix+path.Base(name)+"-"+randomSuffix())
	f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("creating temp file for %s: %w", name, err)
	}
	return f, tmp, nil
}

// Writer is what WriteChecked hands to fill: every byte goes to the temp
// file and into the SHA-256 of the Result, in order.
type Writer struct {
	file fileWriter
	hash hash.Hash
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.file.Write(p)
	w.hash.Write(p[:n])
	return n, err
}

// Parts returns the file and the hash Write feeds, for a caller that
// copies on several goroutines and would rather hash on one of its own
// than after each write (SHA-256 is a third of the CPU time of a zstd
// package). Each must receive every byte, in order.
func (w *Writer) Parts() (file, hash io.Writer) { return &w.file, w.hash }

// writebackEvery is how often fileWriter starts writeback.
const writebackEvery = 8 << 20

// fileWriter counts what it writes and starts the kernel's writeback of
// each 8 MiB written (sync_file_range, SYNC_FILE_RANGE_WRITE: it does not
// wait), so dirty pages do not pile up for the final fsync.
type fileWriter struct {
	f       *os.File
	n       int64
	flushed int64 // writeback started up to here
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	if w.n-w.flushed >= writebackEvery {
		// Only a hint: the fsync before the rename is what guarantees
		// the data, and reports any error, so this one is ignored.
		if rc, cerr := w.f.SyscallConn(); cerr == nil {
			rc.Control(func(fd uintptr) {
				unix.SyncFileRange(int(fd), w.flushed, w.n-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
			})
		}
		w.flushed = w.n
	}
	return n, err
}

// Digest reads r to its end and returns its size and sha256.
func Digest(r io.Reader) (Result, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Result{}, err
	}
	return Result{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// DigestFile is Digest of the file name under root.
func DigestFile(root *os.Root, name string) (Result, error) {
	f, err := root.Open(name)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	res, err := Digest(f)
	if err != nil {
		return Result{}, fmt.Errorf("hashing /%s: %w", name, err)
	}
	return res, nil
}

// Rename moves from onto to (both under root) and fsyncs the directories, so
// the rename survives a power loss.
func Rename(root *os.Root, from, to string) error {
	b := Renames{Root: root}
	if err := b.Rename(from, to); err != nil {
		return err
	}
	return b.Sync()
}

// Renames is Rename for several files, with the directory fsyncs deferred
// to Sync, which fsyncs each directory once: boot's installs rename every
// tool into one directory. Until Sync returns, none of the renames is sure
// to survive a power loss.
type Renames struct {
	Root *os.Root
	dirs []string // to sync, in the order Rename met them
}

// Rename moves from onto to (both under the root).
func (b *Renames) Rename(from, to string) error {
	if err := b.Root.Rename(from, to); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", from, to, err)
	}
	for _, dir := range []string{path.Dir(to), path.Dir(from)} {
		if !slices.Contains(b.dirs, dir) {
			b.dirs = append(b.dirs, dir)
		}
	}
	return nil
}

// Sync fsyncs the directories of the renames so far.
func (b *Renames) Sync() error {
	for len(b.dirs) > 0 {
		if err := SyncDir(b.Root, b.dirs[0]); err != nil {
			return err
		}
		b.dirs = b.dirs[1:]
	}
	return nil
}

// SyncDir fsyncs a directory under root.
func SyncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// SetOwnerMode sets perm on name and, when running as root, root:root.
func SetOwnerMode(root *os.Root, name string, perm fs.FileMode) error {
	if os.Geteuid() == 0 {
		if err := root.Lchown(name, 0, 0); err != nil {
			return fmt.Errorf("chown root:root %s: %w", name, err)
		}
	}
	if err := root.Chmod(name, perm); err != nil {
		return fmt.Errorf("chmod %s %s: %w", perm, name, err)
	}
	return nil
}

// Rel turns an absolute path from the manifest or the design ("/opt/bin")
// into the root-relative name os.Root wants ("opt/bin").
func Rel(abs string) string {
	r := strings.TrimLeft(path.Clean("/"+abs), "/")
	if r == "" {
		return "."
	}
	return r
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
