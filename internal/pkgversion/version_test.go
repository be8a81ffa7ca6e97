package pkgversion_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgbuild"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

const (
	deb = platform.Deb
	rpm = platform.RPM
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format                     platform.Format
		in                         string
		epoch                      uint64
		upstream, revision, string string
	}{
		{deb, "1.34.10-ubuntu24.04u1", 0, "1.34.10", "ubuntu24.04u1", ""},
		{deb, "1.20.5+really1.20.2-1.1+deb12u1", 0, "1.20.5+really1.20.2", "1.1+deb12u1", ""},
		{deb, "1:528.0.0-0", 1, "528.0.0", "0", ""},
		{deb, "1.34.10~rc.1-1", 0, "1.34.10~rc.1", "1", ""},
		{deb, "1.34.10", 0, "1.34.10", "", ""},
		{deb, "0:1.34.10-1", 0, "1.34.10", "1", "1.34.10-1"}, // epoch 0 is the default
		{deb, "1.2-3-4", 0, "1.2-3", "4", ""},                // the revision starts after the last '-'
		{deb, "2:1.0", 2, "1.0", "", ""},
		{deb, "4294967295:1", 4294967295, "1", "", ""},
		{rpm, "1.34.0-5.azl3", 0, "1.34.0", "5.azl3", ""},
		{rpm, "1:1.34.10-1.azl3", 1, "1.34.10", "1.azl3", ""},
		{rpm, "1.34.10~rc.1-1.azl3", 0, "1.34.10~rc.1", "1.azl3", ""},
		{rpm, "1.0^20240101git1-2.cm2", 0, "1.0^20240101git1", "2.cm2", ""},
		{rpm, "1.34.10_1-1", 0, "1.34.10_1", "1", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.format)+"/"+tt.in, func(t *testing.T) {
			t.Parallel()
			v, err := pkgversion.Parse(tt.format, tt.in)
			if err != nil {
				t.Fatalf("Parse(%s, %q): %v", tt.format, tt.in, err)
			}
			want := pkgversion.Version{Format: tt.format, Epoch: tt.epoch, Upstream: tt.upstream, Revision: tt.revision}
			if v != want {
				t.Errorf("Parse(%s, %q) = %+v, want %+v", tt.format, tt.in, v, want)
			}
			wantString := tt.string
			if wantString == "" {
				wantString = tt.in
			}
			if got := v.String(); got != wantString {
				t.Errorf("String() = %q, want %q", got, wantString)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format platform.Format
		in     string
		want   string // fragment of the message
	}{
		{deb, "", "empty"},
		{rpm, "", "empty"},
		{deb, "latest", "must start with a digit"},
		{deb, "v1.34.10", "must start with a digit"},
		{deb, "1:", "empty upstream"},
		{deb, ":1.0", "epoch must be digits"},
		{deb, "a:1.0", "epoch must be digits"},
		{deb, "-1:1.0", "epoch must be digits"},
		{deb, "4294967296:1.0", "epoch out of range"},
		{deb, "99999999999999999999:1.0", "epoch out of range"},
		{deb, "-1", "empty upstream"},
		{deb, "1.0-", "empty revision"},
		{deb, "1:-1", "empty upstream"},
		{deb, "1.34.10 ", "not allowed"},
		{deb, "1.34.10/../x", "not allowed"},
		{deb, "1.34.*", "not allowed"},
		{deb, "1.34.10_1-1", "not allowed in the upstream"}, // '_' is rpm only
		{deb, "1.34.10-1-", "empty revision"},
		{deb, "1.34.10-ubuntu_1", "not allowed in the revision"},
		{deb, "1.0^1", "not allowed"},
		{deb, "1:2:3", "not allowed"},
		{rpm, "1.34.10-1-1.azl3", "not allowed in the upstream"}, // rpm versions hold no '-'
		{rpm, "1.34.10-1.azl3:", "epoch must be digits"},
		{rpm, "latest", "must start with a digit"},
		{rpm, "1.34.10-", "empty revision"},
		{rpm, "~1", "must start with a digit"},
		{rpm, "1.0\n", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%q", tt.format, tt.in), func(t *testing.T) {
			t.Parallel()
			v, err := pkgversion.Parse(tt.format, tt.in)
			if err == nil {
				t.Fatalf("Parse(%s, %q) = %+v, want an error", tt.format, tt.in, v)
			}
			if !errors.Is(err, pkgversion.ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
				t.Errorf("error %q does not quote the input", err)
			}
		})
	}
}

func TestMustParsePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("MustParse(latest) did not panic")
		}
	}()
	pkgversion.MustParse(deb, "latest")
}

// TestCompare holds the rules that matter for node images, with the answers
// dpkg and rpm give (TestCompareAgainstTools checks these pairs too).
func TestCompare(t *testing.T) {
	t.Parallel()
	for _, tt := range comparePairs {
		t.Run(fmt.Sprintf("%s/%s_vs_%s", tt.format, tt.a, tt.b), func(t *testing.T) {
			t.Parallel()
			a, b := pkgversion.MustParse(tt.format, tt.a), pkgversion.MustParse(tt.format, tt.b)
			if got := pkgversion.Compare(a, b); got != tt.want {
				t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := pkgversion.Compare(b, a); got != -tt.want {
				t.Errorf("Compare(%s, %s) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
			if got := pkgversion.Equal(a, b); got != (tt.want == 0) {
				t.Errorf("Equal(%s, %s) = %v", tt.a, tt.b, got)
			}
		})
	}
}

type comparePair struct {
	format platform.Format
	a, b   string
	want   int
}

var comparePairs = []comparePair{
	// The loose-match trap: 1.34.1 is neither 1.34.10 nor 1.34.11.
	{deb, "1.34.1-ubuntu24.04u1", "1.34.10-ubuntu24.04u1", -1},
	{deb, "1.34.1-ubuntu24.04u1", "1.34.11-ubuntu24.04u1", -1},
	{deb, "1.34.10-ubuntu24.04u1", "1.34.11-ubuntu24.04u1", -1},
	{deb, "1.34.2-ubuntu24.04u1", "1.34.10-ubuntu24.04u1", -1}, // numeric, not lexical
	{deb, "1.34.1", "1.34.10", -1},
	{rpm, "1.34.1-1.azl3", "1.34.10-1.azl3", -1},
	{rpm, "1.34.1-1.azl3", "1.34.11-1.azl3", -1},
	{rpm, "1.34.9-1.azl3", "1.34.10-1.azl3", -1},
	{rpm, "1.34.1", "1.34.10", -1},
	// Revisions and releases.
	{deb, "1.34.10-ubuntu24.04u1", "1.34.10-ubuntu24.04u2", -1},
	{deb, "1.34.10-ubuntu22.04u1", "1.34.10-ubuntu24.04u1", -1},
	{deb, "1.34.10", "1.34.10-0", 0}, // an absent Debian revision is "0"
	{deb, "1.34.10", "1.34.10-1", -1},
	{rpm, "1.34.0-5.azl3", "1.34.0-10.azl3", -1},
	{rpm, "1.34.10-1.azl3", "1.34.10-1.cm2", -1},
	{rpm, "1.34.10", "1.34.10-1.azl3", -1},
	// Epochs beat everything.
	{deb, "1:528.0.0-0", "999.0.0-0", 1},
	{deb, "0:1.34.10-1", "1.34.10-1", 0},
	{rpm, "1:1.34.10-1.azl3", "1.34.10-1.azl3", 1},
	{rpm, "1:1.34.10-1.azl3", "2.0.0-1.azl3", 1},
	{rpm, "0:1.34.10-1.azl3", "1.34.10-1.azl3", 0},
	// '~' sorts before everything, even the end; '+' after.
	{deb, "1.34.10~rc.1-1", "1.34.10-1", -1},
	{deb, "1.34.10~rc.1-1", "1.34.10~rc.2-1", -1},
	{deb, "1.34.10~~-1", "1.34.10~-1", -1},
	{deb, "1.34.10~rc.1-1", "1.34.9-1", 1},
	{deb, "1.34.10+azure-1", "1.34.10-1", 1},
	{deb, "1.20.5+really1.20.2-1.1+deb12u1", "1.20.5-1", 1},
	{deb, "1.20.5+really1.20.2-1.1+deb12u1", "1.20.5+really1.20.2-1.1", 1},
	{deb, "1.0a", "1.0+", -1}, // letters sort before other characters
	{deb, "1.0a", "1.0.", -1},
	{deb, "1.0A", "1.0a", -1},
	{rpm, "1.34.10~rc.1-1.azl3", "1.34.10-1.azl3", -1},
	{rpm, "1.0^git1-1", "1.0-1", 1},
	{rpm, "1.0^git1-1", "1.0.1-1", -1},
	{rpm, "1.0~rc1^git1-1", "1.0~rc1-1", 1},
	// Leading zeros and separators.
	{deb, "1:1.0-1", "1:1.00-1", 0},
	{deb, "1.01", "1.1", 0},
	{rpm, "1.01-1", "1.1-1", 0},
	{rpm, "1.0-1", "1_0-1", 0}, // separators only separate
	{rpm, "1.0a-1", "1.0.a-1", 0},
	{rpm, "1.0a-1", "1.0-1", 1},
	{rpm, "1.0.a-1", "1.0.1-1", -1}, // a number is newer than letters
	{rpm, "1.0-1", "1.0.0-1", -1},
	{rpm, "2.0-1", "10.0-1", -1},
	{rpm, "1.34.10-1", "1.34.10-1", 0},
	{rpm, "90-.", "90", 1}, // a release of separators only is still a release
	{rpm, "90-.", "90-_", 0},
	{rpm, "1.0", "1.0-0", -1},
}

func TestKube(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format     platform.Format
		in         string
		want       string // semver String()
		prerelease string
	}{
		{deb, "1.34.10-ubuntu24.04u1", "1.34.10", ""},
		{deb, "1.20.5+really1.20.2-1.1+deb12u1", "1.20.2", ""},
		{deb, "1.34.10~rc.1-1", "1.34.10-rc.1", "rc.1"},
		{deb, "1:528.0.0-0", "528.0.0", ""},
		{rpm, "1.34.0-5.azl3", "1.34.0", ""},
		{rpm, "1:1.34.10-1.azl3", "1.34.10", ""},
		{rpm, "1.34.10~rc.1-1.azl3", "1.34.10-rc.1", "rc.1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			k, err := pkgversion.MustParse(tt.format, tt.in).Kube()
			if err != nil {
				t.Fatalf("Kube(): %v", err)
			}
			if k.String() != tt.want || k.Prerelease() != tt.prerelease {
				t.Errorf("Kube() = %s (prerelease %q), want %s (prerelease %q)", k, k.Prerelease(), tt.want, tt.prerelease)
			}
		})
	}
	for _, in := range []string{"1.34-1", "1.34.10.1-1", "01.34.10-1", "2024.1-1", "1.34.10+really1.34-1", "528-0"} {
		t.Run("bad/"+in, func(t *testing.T) {
			t.Parallel()
			v := pkgversion.MustParse(deb, in)
			if k, err := v.Kube(); err == nil {
				t.Errorf("Kube() of %s = %s, want an error", in, k)
			} else if !strings.Contains(err.Error(), in) {
				t.Errorf("error %q does not name %s", err, in)
			}
		})
	}
}

func TestEqualNeedsSameFormat(t *testing.T) {
	t.Parallel()
	if pkgversion.Equal(pkgversion.MustParse(deb, "1.0-1"), pkgversion.MustParse(rpm, "1.0-1")) {
		t.Error("a deb and an rpm version are Equal")
	}
}

// genVersion makes a random valid version of format f from a small alphabet
// that is dense in the characters the comparison rules treat specially.
func genVersion(r *rand.Rand, f platform.Format) string {
	pick := func(alphabet string) byte { return alphabet[r.IntN(len(alphabet))] }
	upAlpha, revAlpha := "0001129..~+aZb-", "0119.~+ab"
	if f == rpm {
		upAlpha, revAlpha = "00119.._~^+aZb", "0119.~^_ab"
	}
	var b strings.Builder
	if r.IntN(8) == 0 {
		fmt.Fprintf(&b, "%d:", r.IntN(3))
	}
	b.WriteByte(pick("0129"))
	for range r.IntN(7) {
		b.WriteByte(pick(upAlpha))
	}
	if f == deb && strings.HasSuffix(b.String(), "-") {
		b.WriteByte(pick("019a"))
	}
	if r.IntN(3) > 0 || (f == deb && strings.Contains(b.String(), "-")) {
		b.WriteByte('-')
		b.WriteByte(pick(revAlpha))
		for range r.IntN(4) {
			b.WriteByte(pick(revAlpha))
		}
	}
	return b.String()
}

// mutate changes a version a little, so that pairs are often close (and
// sometimes equal) rather than differing in their first character.
func mutate(r *rand.Rand, f platform.Format, s string) string {
	for range 20 {
		bs := []byte(s)
		switch i := r.IntN(len(bs)); r.IntN(4) {
		case 0:
			bs[i] = "0123456789a~.^_+"[r.IntN(16)]
		case 1:
			bs = append(bs[:i:i], append([]byte{"0~a.^"[r.IntN(5)]}, bs[i:]...)...)
		case 2:
			bs = append(bs[:i:i], bs[i+1:]...)
		case 3:
			bs = append(bs, "0~1.a^"[r.IntN(6)])
		}
		if _, err := pkgversion.Parse(f, string(bs)); err == nil {
			return string(bs)
		}
	}
	return s
}

func genPairs(f platform.Format, seed uint64, n int) [][2]string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var pairs [][2]string
	for _, p := range comparePairs {
		if p.format == f {
			pairs = append(pairs, [2]string{p.a, p.b})
		}
	}
	for len(pairs) < n {
		a := genVersion(r, f)
		if _, err := pkgversion.Parse(f, a); err != nil {
			panic(fmt.Sprintf("generated an invalid %s version %q: %v", f, a, err))
		}
		b := genVersion(r, f)
		switch r.IntN(4) {
		case 0, 1:
			b = mutate(r, f, a)
		case 2:
			b = a
			if r.IntN(2) == 0 {
				b = mutate(r, f, mutate(r, f, a))
			}
		}
		pairs = append(pairs, [2]string{a, b})
	}
	return pairs
}

func TestGenVersionIsValid(t *testing.T) {
	t.Parallel()
	for _, f := range []platform.Format{deb, rpm} {
		r := rand.New(rand.NewPCG(7, 7))
		for range 2000 {
			if s := genVersion(r, f); true {
				if _, err := pkgversion.Parse(f, s); err != nil {
					t.Fatalf("genVersion(%s) = %q: %v", f, s, err)
				}
			}
		}
	}
}

var (
	toolPairs = flag.Int("pairs", 2000, "how many version pairs to check against dpkg and rpm")
	toolSeed  = flag.Uint64("seed", 20240601, "seed of the random version pairs")
)

// TestCompareAgainstDpkg runs pairs through dpkg --compare-versions, in a few
// shell processes, and asserts Compare agrees on every one.
func TestCompareAgainstDpkg(t *testing.T) {
	t.Parallel()
	pkgbuild.Require(t, "dpkg")
	pairs := genPairs(deb, *toolSeed, *toolPairs)
	// dpkg compares one pair per process; split the pairs over a few shells.
	const shells = 4
	const script = `while read -r a b; do
	if dpkg --compare-versions "$a" lt "$b"; then echo -1
	elif dpkg --compare-versions "$a" eq "$b"; then echo 0
	else echo 1; fi
done`
	got := make([]int, len(pairs))
	var wg sync.WaitGroup
	errs := make([]error, shells)
	for s := range shells {
		wg.Go(func() {
			var in bytes.Buffer
			var idx []int
			for i := s; i < len(pairs); i += shells {
				fmt.Fprintf(&in, "%s %s\n", pairs[i][0], pairs[i][1])
				idx = append(idx, i)
			}
			res, err := runLines(exec.Command("sh", "-c", script), &in, len(idx))
			if err != nil {
				errs[s] = err
				return
			}
			for k, i := range idx {
				got[i] = res[k]
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, "dpkg", deb, pairs, got)
}

// TestCompareAgainstRpm runs pairs through rpm.vercmp in one rpm --eval.
func TestCompareAgainstRpm(t *testing.T) {
	t.Parallel()
	pkgbuild.Require(t, "rpm")
	pairs := genPairs(rpm, *toolSeed+1, *toolPairs)
	var in bytes.Buffer
	for _, p := range pairs {
		fmt.Fprintf(&in, "%s %s\n", p[0], p[1])
	}
	file := filepath.Join(t.TempDir(), "pairs")
	if err := os.WriteFile(file, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lua := `%{lua: for line in io.lines(rpm.expand("%{pairs}")) do
	local a, b = line:match("^(%S+) (%S+)$")
	print(rpm.vercmp(a, b) .. "\n")
end}`
	got, err := runLines(exec.Command("rpm", "--define", "pairs "+file, "--eval", lua), nil, len(pairs))
	if err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, "rpm", rpm, pairs, got)
}

func runLines(cmd *exec.Cmd, stdin *bytes.Buffer, n int) ([]int, error) {
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, stderr.String())
	}
	if stderr.Len() > 0 {
		// dpkg warns about syntax it dislikes: our grammar must not be looser.
		return nil, fmt.Errorf("%s complained: %s", cmd.Path, stderr.String())
	}
	var res []int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		c, err := strconv.Atoi(line)
		if err != nil {
			return nil, fmt.Errorf("%s: unexpected output line %q", cmd.Path, line)
		}
		res = append(res, max(-1, min(1, c)))
	}
	if len(res) != n {
		return nil, fmt.Errorf("%s: %d results for %d pairs", cmd.Path, len(res), n)
	}
	return res, nil
}

func checkAgainst(t *testing.T, tool string, f platform.Format, pairs [][2]string, want []int) {
	t.Helper()
	failures, equal := 0, 0
	for i, p := range pairs {
		a, b := pkgversion.MustParse(f, p[0]), pkgversion.MustParse(f, p[1])
		if want[i] == 0 {
			equal++
		}
		if got := pkgversion.Compare(a, b); got != want[i] {
			t.Errorf("Compare(%q, %q) = %d, %s says %d", p[0], p[1], got, tool, want[i])
			if failures++; failures > 20 {
				t.Fatal("too many disagreements")
			}
		}
	}
	t.Logf("%d %s pairs agree with %s (%d equal)", len(pairs), f, tool, equal)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.34.10-ubuntu24.04u1", "1.34.0-5.azl3", "1:1.34.10-1.azl3",
		"1.20.5+really1.20.2-1.1+deb12u1", "1:528.0.0-0", "1.34.10~rc.1-1", "1.0^git1", "", "1:", "-1", "latest"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, isRPM bool) {
		format := deb
		if isRPM {
			format = rpm
		}
		v, err := pkgversion.Parse(format, s)
		if err != nil {
			if !errors.Is(err, pkgversion.ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		again, err := pkgversion.Parse(format, v.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, v.String(), err)
		}
		if again != v {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, v)
		}
		if pkgversion.Compare(v, v) != 0 || !pkgversion.Equal(v, again) {
			t.Fatalf("%q is not equal to itself", s)
		}
		_, _ = v.Kube() // must not panic
	})
}

func FuzzCompare(f *testing.F) {
	for _, p := range comparePairs {
		f.Add(p.a, p.b, p.b, p.format == rpm)
	}
	f.Fuzz(func(t *testing.T, sa, sb, sc string, isRPM bool) {
		format := deb
		if isRPM {
			format = rpm
		}
		a, errA := pkgversion.Parse(format, sa)
		b, errB := pkgversion.Parse(format, sb)
		if errA != nil || errB != nil {
			return
		}
		ab, ba := pkgversion.Compare(a, b), pkgversion.Compare(b, a)
		if ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d, want -1, 0 or 1", sa, sb, ab)
		}
		if ab != -ba {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", sa, sb, ab, sb, sa, ba)
		}
		if pkgversion.Equal(a, b) != (ab == 0) {
			t.Fatalf("Equal(%q, %q) = %v but Compare = %d", sa, sb, pkgversion.Equal(a, b), ab)
		}
		if c, err := pkgversion.Parse(format, sc); err == nil {
			bc, ac := pkgversion.Compare(b, c), pkgversion.Compare(a, c)
			if ab <= 0 && bc <= 0 && ac > 0 {
				t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", sa, sb, sc, sa, sc)
			}
		}
	})
}

func TestReportedIn(t *testing.T) {
	tests := []struct {
		format platform.Format
		v, out string
		want   bool
	}{
		{platform.Deb, "1.34.10-ubuntu24.04u1", "Kubernetes v1.34.10\n", true},
		{platform.Deb, "1.34.1-ubuntu24.04u1", "Kubernetes v1.34.10\n", false}, // the loose-match trap
		{platform.Deb, "1.34.1-ubuntu24.04u1", "Kubernetes v11.34.1\n", false},
		{platform.Deb, "1.34.1-ubuntu24.04u1", "Kubernetes v1.34.1.\n", true},
		{platform.Deb, "1.34.1-ubuntu24.04u1", "v1.34.10 and v1.34.1-dirty", true},
		{platform.Deb, "1.34.10-ubuntu24.04u1", "Kubernetes v1.34.1\n", false},
		{platform.Deb, "1.20.5+really1.20.2-1.1+deb12u1", `Client Version: version.Info{Major:"1", Minor:"20", GitVersion:"v1.20.2"}`, true},
		{platform.Deb, "1.20.5+really1.20.2-1.1+deb12u1", "v1.20.5", false},
		{platform.Deb, "1.6.20~ds1-1+deb12u3", "containerd github.com/containerd/containerd 1.6.20~ds1", true},
		{platform.RPM, "1:1.35.7-1.azl3", "Kubernetes v1.35.7", true},
	}
	for _, tc := range tests {
		if got := pkgversion.MustParse(tc.format, tc.v).ReportedIn(tc.out); got != tc.want {
			t.Errorf("%s in %q = %v, want %v", tc.v, tc.out, got, tc.want)
		}
	}
}
