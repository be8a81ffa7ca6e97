package pkgfile

import (
	"errors"
	"strings"
)

// The kinds of failure a caller may want to tell apart. Every error that
// Open, Extract and ExtractTo return for a bad package is an *Error that
// wraps exactly one of them, so errors.Is(err, ErrDigest) works.
var (
	// ErrNotFound: none of the candidate paths is in the package.
	ErrNotFound = errors.New("not in package")
	// ErrCorrupt: the package is truncated, malformed or inconsistent
	// (bad magic, bad header field, wrong compression, missing member).
	ErrCorrupt = errors.New("corrupt package")
	// ErrUnsupported: well-formed but uses something this package does not
	// read (an unknown compressor, a format version other than 2.x).
	ErrUnsupported = errors.New("unsupported package")
	// ErrDigest: content does not match a digest the package declares.
	ErrDigest = errors.New("digest mismatch")
	// ErrUnsafe: an entry name escapes the package root, or the wanted
	// entry is not a regular file (symlink, hard link, device, ...).
	ErrUnsafe = errors.New("unsafe entry")
	// ErrTooLarge: a size exceeds Limits.
	ErrTooLarge = errors.New("too large")
)

// Error describes what is wrong with which package, and where in it.
type Error struct {
	Path   string // the package file
	Entry  string // the archive member or entry concerned, if any
	Kind   error  // one of the Err* sentinels above
	Detail string // what is wrong, for people
	Err    error  // the underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Entry != "" {
		b.WriteString(": ")
		b.WriteString(e.Entry)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
