// Package pkgversion parses Debian and RPM package versions and compares them
// with the rules of dpkg and rpm, so that "1.34.1" never matches "1.34.10" and
// "1.34.10~rc.1" sorts before "1.34.10".
package pkgversion

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeimage/reconcile/internal/platform"
)

// Version is a package version: [epoch:]upstream[-revision]. For RPM the
// revision is the release.
type Version struct {
	Format   platform.Format
	Epoch    uint64
	Upstream string
	Revision string
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("not a package version")

// Parse reads a version in the syntax of format f.
func Parse(f platform.Format, s string) (Version, error) {
	v := Version{Format: f}
	fail := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%w: %q: %s", ErrSyntax, s, why)
	}
	if s == "" {
		return fail("empty")
	}
	rest := s
	if e, r, ok := strings.Cut(s, ":"); ok {
		if e == "" || !allDigits(e) {
			return fail("epoch must be digits")
		}
		n, err := strconv.ParseUint(e, 10, 32)
		if err != nil {
			return fail("epoch out of range")
		}
		v.Epoch, rest = n, r
	}
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.Upstream, v.Revision = rest[:i], rest[i+1:]
		if v.Revision == "" {
			return fail("empty revision after '-'")
		}
	} else {
		v.Upstream = rest
	}
	if v.Upstream == "" {
		return fail("empty upstream version")
	}
	if v.Upstream[0] < '0' || v.Upstream[0] > '9' {
		return fail("upstream version must start with a digit")
	}
	upOK, revOK := debUpstreamChar, debRevisionChar
	if f == platform.RPM {
		upOK, revOK = rpmChar, rpmChar
	}
	for _, c := range []byte(v.Upstream) {
		if !upOK(c) {
			return fail(fmt.Sprintf("character %q not allowed in the upstream version", c))
		}
	}
	for _, c := range []byte(v.Revision) {
		if !revOK(c) {
			return fail(fmt.Sprintf("character %q not allowed in the revision", c))
		}
	}
	return v, nil
}

// MustParse is Parse for literals in tests and tables; it panics on error.
func MustParse(f platform.Format, s string) Version {
	v, err := Parse(f, s)
	if err != nil {
		panic(err)
	}
	return v
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// deb-version(7): upstream may hold '-' only when a revision follows, and
// LastIndexByte already split at the last one.
func debUpstreamChar(c byte) bool { return isAlnum(c) || strings.IndexByte(".+~-", c) >= 0 }
func debRevisionChar(c byte) bool { return isAlnum(c) || strings.IndexByte(".+~", c) >= 0 }
func rpmChar(c byte) bool         { return isAlnum(c) || strings.IndexByte("._+~^", c) >= 0 }

// String renders the version as it was written, epoch included when non-zero.
func (v Version) String() string {
	var b strings.Builder
	if v.Epoch != 0 {
		b.WriteString(strconv.FormatUint(v.Epoch, 10))
		b.WriteByte(':')
	}
	b.WriteString(v.Upstream)
	if v.Revision != "" {
		b.WriteByte('-')
		b.WriteString(v.Revision)
	}
	return b.String()
}

// Compare orders two versions of the same format: -1, 0 or +1.
func Compare(a, b Version) int {
	if a.Epoch != b.Epoch {
		if a.Epoch < b.Epoch {
			return -1
		}
		return 1
	}
	cmp := debCompare
	if a.Format == platform.RPM {
		cmp = rpmCompare
	}
	if c := cmp(a.Upstream, b.Upstream); c != 0 {
		return c
	}
	if a.Format == platform.RPM && (a.Revision == "") != (b.Revision == "") {
		// rpm: a release, even one of separators only ("1.0-."), is newer
		// than none.
		if a.Revision == "" {
			return -1
		}
		return 1
	}
	return cmp(a.Revision, b.Revision)
}

// Equal reports whether a and b are the same version by the format's rules
// (so "1:1.0-1" equals "1:1.00-1" for dpkg, as dpkg itself says).
func Equal(a, b Version) bool { return a.Format == b.Format && Compare(a, b) == 0 }

// ReportedIn reports whether a binary's version output names this version:
// the upstream version as written, or for Debian's "X+reallyY" the Y the
// binary itself was built as (kubectl 1.20.5+really1.20.2 says v1.20.2).
// The version must stand on its own: 1.34.1 is not reported by "v1.34.10".
func (v Version) ReportedIn(output string) bool {
	if containsVersion(output, v.Upstream) {
		return true
	}
	_, real, ok := strings.Cut(v.Upstream, "+really")
	return ok && real != "" && containsVersion(output, real)
}

// containsVersion finds ver in s with no digit or dot-digit glued to it.
func containsVersion(s, ver string) bool {
	isDigit := func(i int) bool { return i >= 0 && i < len(s) && s[i] >= '0' && s[i] <= '9' }
	for from := 0; ; {
		i := strings.Index(s[from:], ver)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(ver)
		before := isDigit(start-1) || start > 0 && s[start-1] == '.' && isDigit(start-2)
		after := isDigit(end) || end < len(s) && s[end] == '.' && isDigit(end+1)
		if !before && !after {
			return true
		}
		from = start + 1
	}
}

// Kube is the upstream version as a Kubernetes version: "+reallyX" means X
// (Debian's convention for a downgrade), '~' starts a pre-release.
func (v Version) Kube() (*semver.Version, error) {
	up := v.Upstream
	if _, real, ok := strings.Cut(up, "+really"); ok {
		up = real
	}
	up = strings.Replace(up, "~", "-", 1)
	sv, err := semver.StrictNewVersion(up)
	if err != nil {
		return nil, fmt.Errorf("upstream version %q of %q is not a MAJOR.MINOR.PATCH version: %w", v.Upstream, v.String(), err)
	}
	return sv, nil
}

// dpkg's verrevcmp: non-digit runs compare by a byte order in which '~' sorts
// before everything, even the end of the string, and letters before other
// characters; digit runs compare numerically.
func debCompare(a, b string) int {
	order := func(s string, i int) int {
		if i >= len(s) {
			return 0
		}
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			return 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			return int(c)
		case c == '~':
			return -1
		}
		return int(c) + 256
	}
	isDigit := func(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a, i)) || (j < len(b) && !isDigit(b, j)) {
			if ac, bc := order(a, i), order(b, j); ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		first := 0
		for isDigit(a, i) && isDigit(b, j) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if isDigit(a, i) {
			return 1
		}
		if isDigit(b, j) {
			return -1
		}
		if first != 0 {
			return sign(first)
		}
	}
	return 0
}

// rpm's rpmvercmp: segments of digits or letters; separators are ignored
// except '~' (sorts before anything) and '^' (sorts after the end but before
// anything else).
func rpmCompare(a, b string) int {
	if a == b {
		return 0
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	isAlpha := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isAlnum(a[i]) && a[i] != '~' && a[i] != '^' {
			i++
		}
		for j < len(b) && !isAlnum(b[j]) && b[j] != '~' && b[j] != '^' {
			j++
		}
		ca, cb := at(a, i), at(b, j)
		if ca == '~' || cb == '~' {
			if ca != '~' {
				return 1
			}
			if cb != '~' {
				return -1
			}
			i++
			j++
			continue
		}
		if ca == '^' || cb == '^' {
			switch {
			case ca == 0:
				return -1
			case cb == 0:
				return 1
			case ca != '^':
				return 1
			case cb != '^':
				return -1
			}
			i++
			j++
			continue
		}
		if ca == 0 || cb == 0 {
			break
		}
		class := isAlpha
		isNum := isDigit(ca)
		if isNum {
			class = isDigit
		}
		si, sj := i, j
		for i < len(a) && class(a[i]) {
			i++
		}
		for j < len(b) && class(b[j]) {
			j++
		}
		segA, segB := a[si:i], b[sj:j]
		if segB == "" {
			// A number is newer than letters in the same place.
			if isNum {
				return 1
			}
			return -1
		}
		if isNum {
			segA, segB = strings.TrimLeft(segA, "0"), strings.TrimLeft(segB, "0")
			if len(segA) != len(segB) {
				return sign(len(segA) - len(segB))
			}
		}
		if c := strings.Compare(segA, segB); c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i < len(a):
		return 1
	}
	return -1
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
