package observe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// LockPath serialises runs on one root.
const LockPath = "var/lib/reconcile/lock"

// ErrLocked means another run held the lock for the whole wait.
var ErrLocked = errors.New("another reconcile run holds the lock")

// Lock takes an exclusive flock on the root's lock file, waiting up to wait.
// The returned func releases it.
func Lock(ctx context.Context, root *os.Root, wait time.Duration) (func(), error) {
	if err := root.MkdirAll(path.Dir(LockPath), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	// O_NONBLOCK: a FIFO planted at the lock's path must not block the
	// open; the type is checked on the descriptor.
	f, err := root.OpenFile(LockPath, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%w: %s", rootfs.ErrNotRegular, fi.Mode().Type())
		}
		return nil, fmt.Errorf("opening lock file /%s: %w", LockPath, err)
	}
	deadline := time.Now().Add(wait)
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 500*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking /%s: %w", LockPath, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w (/%s) after waiting %s", ErrLocked, LockPath, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}
