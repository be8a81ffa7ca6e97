package manifest

import (
	"fmt"
	"testing"

	"github.com/Masterminds/semver/v3"
)

// TestSpansMatchCheck: the runs spans finds are exactly the versions the
// constraint admits, checked version by version over a grid that reaches
// past every bound.
func TestSpansMatchCheck(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"*", ">= 1.33, < 1.37", ">= 1.33 < 1.37", "> 1.33", "> 1.33.2", "<= 1.34", "<= 1.34.2", "< 1.34.2",
		"~1.34", "~1.34.2", "^1.34", "^0.3.1", "^0.0.3", "1.34.x", "1.x", "1.2 - 1.4.5", "!= 1.35", "!= 1.35.2",
		"1.33.x || >= 1.36", "< 1.2 || > 1.4 || 1.3.1", ">= 1.35.0-0", "> 1.35.0-rc.1, < 1.36", "=1.34", "v1.34.x",
		">= 0.0.0", "< 0.0.1", ">= 2, < 1",
	} {
		c, err := semver.NewConstraint(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		runs := spans(c, text)
		for major := uint64(0); major <= 3; major++ {
			for minor := uint64(0); minor <= 40; minor++ {
				for patch := uint64(0); patch <= 8; patch++ {
					r := release{major, minor, patch}
					in := false
					for _, s := range runs {
						if compareRelease(r, s.from) >= 0 && (s.open || compareRelease(r, s.to) < 0) {
							in = true
						}
					}
					if want := c.Check(semver.New(major, minor, patch, "", "")); in != want {
						t.Errorf("%q: spans %v say %v for %d.%d.%d, Check says %v", text, runs, in, major, minor, patch, want)
					}
				}
			}
		}
	}
}

// TestFirstOverlap: the sweep finds a shared version whenever two entries'
// constraints share one, and only then, against a pairwise check.
func TestFirstOverlap(t *testing.T) {
	t.Parallel()
	texts := []string{"*", ">= 1.33, < 1.36", ">= 1.36", "~1.35", "1.33.x || >= 1.38", "< 1.33", "1.34.x", "!= 1.34", "^2", "1.37.1"}
	for i, a := range texts {
		for j, b := range texts {
			if i >= j {
				continue
			}
			sa, sb := mustSpans(t, a), mustSpans(t, b)
			var all []owned
			for _, s := range sa {
				all = append(all, owned{s, 0})
			}
			for _, s := range sb {
				all = append(all, owned{s, 1})
			}
			_, _, at, found := firstOverlap(all)
			want := false
			for _, x := range sa {
				for _, y := range sb {
					if (y.open || compareRelease(x.from, y.to) < 0) && (x.open || compareRelease(y.from, x.to) < 0) {
						want = true
					}
				}
			}
			if found != want {
				t.Errorf("%q and %q: overlap %v (at %v), want %v", a, b, found, at, want)
			}
			if found {
				v := semver.New(at[0], at[1], at[2], "", "")
				if !mustConstraint(t, a).Check(v) || !mustConstraint(t, b).Check(v) {
					t.Errorf("%q and %q: both said to serve %s", a, b, v)
				}
			}
		}
	}
}

func mustConstraint(t *testing.T, s string) *semver.Constraints {
	t.Helper()
	c, err := semver.NewConstraint(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSpans(t *testing.T, s string) []span { return spans(mustConstraint(t, s), s) }

func TestVersionsIn(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		">= 1.33, < 1.37":  "[[1 33 0] [1 37 0]]",
		">= 1.35.0-0":      "[[1 35 0]]",
		"*":                "[]",
		"v1.34.x || ^2.1":  "[[1 34 0] [2 1 0]]",
		"1.2 - 1.4.5":      "[[1 2 0] [1 4 5]]",
		"> 1.35.0-rc.1.2 ": "[[1 35 0]]",
	} {
		if got := fmt.Sprint(versionsIn(s)); got != want {
			t.Errorf("versionsIn(%q) = %s, want %s", s, got, want)
		}
	}
}

// TestExactServingText: the text of an exact entry is what semver's String
// spells, for every part a version may have, as parsed by either parser.
func TestExactServingText(t *testing.T) {
	for _, s := range []string{"0.0.0", "1.34.10", "1.35.0-rc.1", "1.35.0+azl3", "1.35.0-alpha.0+build.7", "10.200.3000", "v1.34.1", "1.34"} {
		for _, parse := range []func(string) (*semver.Version, error){semver.StrictNewVersion, semver.NewVersion} {
			v, err := parse(s)
			if err != nil {
				continue
			}
			if got, want := exactServing(v).text, v.String(); got != want {
				t.Errorf("%q: text %q, String %q", s, got, want)
			}
		}
	}
}
