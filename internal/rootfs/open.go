package rootfs

import (
	"fmt"
	"os"
	"syscall"
)

// OpenRegular opens name (relative to root) for reading and refuses anything
// but a regular file. It opens with O_NONBLOCK so that a FIFO planted where a
// file is expected (os-release, the state record, dpkg's status) is refused
// at once instead of blocking the run forever, and it checks the type on the
// opened descriptor, so a swap between a check and the open cannot slip
// another file in. Symbolic links are followed only inside root.
func OpenRegular(root *os.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: "/" + name, Err: fmt.Errorf("%w: %s is not a regular file", ErrNotRegular, fi.Mode().Type())}
	}
	return f, nil
}

// ErrNotRegular is a path that holds a FIFO, device, socket or directory
// where reconcile expects a regular file.
var ErrNotRegular = fmt.Errorf("not a regular file")
