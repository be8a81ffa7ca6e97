package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// rank is how specific what an entry serves is; Resolve prefers the lower.
type rank int

const (
	exact      rank = iota // "1.34.10"
	minorLine              // "1.34": every 1.34.x
	constraint             // ">= 1.33, < 1.37", "*"
)

// serving is what an entry's k8sVersion admits.
type serving struct {
	kind rank
	v    *semver.Version // exact: the version; minorLine: MAJOR.MINOR.0
	c    *semver.Constraints
	text string // canonical spelling: what two entries are compared by
}

func (s serving) serves(v *semver.Version) bool {
	if v == nil || s.v == nil && s.c == nil {
		return false // a hand-built Entry serves nothing
	}
	switch s.kind {
	case minorLine:
		return v.Major() == s.v.Major() && v.Minor() == s.v.Minor()
	case constraint:
		// Constraints are about release lines: a pre-release of 1.35.0 is
		// in ">= 1.35" as every 1.35 patch is, and never in "< 1.35".
		return s.c.Check(semver.New(v.Major(), v.Minor(), v.Patch(), "", ""))
	}
	return v.Equal(s.v)
}

const k8sSyntax = `a Kubernetes version (1.34.10), minor line (1.34) or constraint (">= 1.33, < 1.37", "*")`

// parseServing reads a k8sVersion: one version, a minor line or a
// Masterminds/semver constraint. Only text with an operator is a constraint,
// so a mistyped "1.34.x" is refused rather than read as a range.
func parseServing(s string) (serving, error) {
	if strings.ContainsAny(s, "<>=!~^*|,") || strings.Contains(s, " - ") {
		c, err := semver.NewConstraint(s)
		if err != nil {
			return serving{}, fmt.Errorf("%q is not %s: %w", s, k8sSyntax, err)
		}
		return serving{kind: constraint, c: c, text: strings.Join(strings.Fields(s), " ")}, nil
	}
	v, minor, err := parseK8s(s)
	if err != nil {
		return serving{}, fmt.Errorf("%q is not %s", s, k8sSyntax)
	}
	if minor {
		return serving{kind: minorLine, v: v, text: fmt.Sprintf("%d.%d", v.Major(), v.Minor())}, nil
	}
	return exactServing(v), nil
}

// exactServing serves v alone. Its text is v.String() spelt without fmt:
// semver's String was a twentieth of a 1,000-entry dry-run.
func exactServing(v *semver.Version) serving {
	text := strconv.FormatUint(v.Major(), 10) + "." + strconv.FormatUint(v.Minor(), 10) + "." + strconv.FormatUint(v.Patch(), 10)
	if v.Prerelease() != "" {
		text += "-" + v.Prerelease()
	}
	if v.Metadata() != "" {
		text += "+" + v.Metadata()
	}
	return serving{kind: exact, v: v, text: text}
}

// parseK8s reads "1.34.10" (one version) or "1.34" (a minor line).
func parseK8s(s string) (*semver.Version, bool, error) {
	bare := strings.TrimPrefix(s, "v")
	if strings.Count(bare, ".") == 1 && !strings.ContainsAny(bare, "-+") {
		v, err := semver.StrictNewVersion(bare + ".0")
		if err != nil {
			return nil, false, fmt.Errorf("%q is not a Kubernetes version (1.34.10) or minor line (1.34)", s)
		}
		return v, true, nil
	}
	v, err := semver.StrictNewVersion(bare)
	if err != nil {
		return nil, false, fmt.Errorf("%q is not a Kubernetes version (1.34.10) or minor line (1.34)", s)
	}
	return v, false, nil
}

// release is a MAJOR.MINOR.PATCH version, ordered as semver orders them.
type release [3]uint64

func compareRelease(a, b release) int {
	return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]))
}

// span is a run [from, to) of release versions a constraint admits; open
// means it has no end.
type span struct {
	from, to release
	open     bool
}

// spans is the set of release versions a constraint admits, as disjoint
// sorted runs. Whatever the operators (comparisons, ~, ^, wildcards, hyphen
// ranges, !=, ||), the admitted set only starts or stops at a version the
// constraint names, at the next patch, the next minor or the next major of
// one: so evaluating the constraint at those points (and at 0.0.0) finds
// every run exactly.
func spans(c *semver.Constraints, text string) []span {
	points := []release{{0, 0, 0}}
	for _, b := range versionsIn(text) {
		points = append(points, b, release{b[0], b[1], b[2] + 1}, release{b[0], b[1] + 1, 0}, release{b[0] + 1, 0, 0})
	}
	slices.SortFunc(points, compareRelease)
	points = slices.Compact(points)
	var out []span
	in := false
	for _, p := range points {
		ok := c.Check(semver.New(p[0], p[1], p[2], "", ""))
		switch {
		case ok && !in:
			out = append(out, span{from: p, open: true})
		case !ok && in:
			out[len(out)-1].to, out[len(out)-1].open = p, false
		}
		in = ok
	}
	return out
}

// versionsIn finds the versions a constraint names: "1.33" in ">= 1.33",
// "1.35.0" in "1.35.0-0"; a wildcard or a missing part counts as 0.
func versionsIn(s string) []release {
	var out []release
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || i > 0 && (isDigit(s[i-1]) || s[i-1] == '.' || s[i-1] == '-' || s[i-1] == '+') {
			i++
			continue
		}
		var r release
		for part := 0; part < 3 && i < len(s); part++ {
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j == i {
				break // a wildcard or the end: 0
			}
			r[part], _ = strconv.ParseUint(s[i:j], 10, 64)
			i = j
			if i+1 < len(s) && s[i] == '.' && isDigit(s[i+1]) {
				i++
			} else {
				break
			}
		}
		// Skip a pre-release or build suffix: it names no other line.
		for i < len(s) && s[i] != ' ' && s[i] != ',' && s[i] != '|' {
			i++
		}
		out = append(out, r)
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// owned is a span of one entry's constraint.
type owned struct {
	span
	entry int
}

// firstOverlap finds, among spans of several entries, one pair of entries
// whose spans share a version, by a sweep over the spans sorted by start:
// O(n log n) in the spans. It returns the two entries (earlier, later in
// manifest order) and the first shared version.
func firstOverlap(all []owned) (a, b int, at release, found bool) {
	slices.SortStableFunc(all, func(x, y owned) int { return compareRelease(x.from, y.from) })
	var reach owned // the span reaching furthest so far
	for i, s := range all {
		if i > 0 && reach.entry != s.entry && (reach.open || compareRelease(s.from, reach.to) < 0) {
			return min(reach.entry, s.entry), max(reach.entry, s.entry), s.from, true
		}
		if i == 0 || s.open || !reach.open && compareRelease(s.to, reach.to) > 0 {
			reach = s
		}
	}
	return 0, 0, release{}, false
}
