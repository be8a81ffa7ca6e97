// Package rootfs writes files under a root directory so that a target path
// never holds a partial file: every write goes to a temp file in the target's
// directory, is fsynced, renamed into place, and the directory is fsynced.
package rootfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
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
func WriteChecked(root *os.Root, name string, perm fs.FileMode, fill func(io.Writer) error, check func(Result) error) (res Result, err error) {
	dir := path.Dir(name)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := path.Join(dir, TempPrefix+path.Base(name)+"-"+randomSuffix())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, fmt.Errorf("creating temp file for %s: %w", name, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			root.Remove(tmp)
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err = fill(cw); err != nil {
		return res, err
	}
	res = Result{Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}
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
	if err := root.Rename(from, to); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", from, to, err)
	}
	if err := SyncDir(root, path.Dir(to)); err != nil {
		return err
	}
	if path.Dir(from) != path.Dir(to) {
		return SyncDir(root, path.Dir(from))
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

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
