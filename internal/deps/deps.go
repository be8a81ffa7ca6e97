// Package deps tells which of a package's dependencies the node lacks. Boot
// bypasses the package manager, so nothing else would notice that kubelet's
// conntrack or iptables is missing until kubelet fails at run time.
package deps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/nodeimage/reconcile/internal/platform"
	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// Result says which dependency strings are unsatisfied, as the state the
// plan reads.
type Result = state.Deps

// Check looks deps up in the package database under root: dpkg's status
// file for deb, `rpm -q --whatprovides` for rpm. deps are as the package
// wrote them ("libc6 (>= 2.34)", "iptables | nftables", "glibc >= 2.34").
func Check(ctx context.Context, root *os.Root, f platform.Format, deps []string) (Result, error) {
	if len(deps) == 0 {
		return Result{Checked: true, Missing: map[string]bool{}}, nil
	}
	if f == platform.RPM {
		return checkRPM(ctx, root, deps)
	}
	return checkDeb(root, deps)
}

const dpkgStatus = "var/lib/dpkg/status"

func checkDeb(root *os.Root, deps []string) (Result, error) {
	st, err := rootfs.OpenRegular(root, dpkgStatus)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{Why: "no /" + dpkgStatus + " on this node"}, nil
	}
	// The database only feeds warnings: one that is no regular file (a
	// FIFO would block the run) leaves the dependencies unchecked.
	if errors.Is(err, rootfs.ErrNotRegular) {
		return Result{Why: "/" + dpkgStatus + " is not a regular file"}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading /%s: %w", dpkgStatus, err)
	}
	defer st.Close()
	installed, err := parseStatus(st)
	if err != nil {
		return Result{}, fmt.Errorf("reading /%s: %w", dpkgStatus, err)
	}
	res := Result{Checked: true, Missing: map[string]bool{}}
	for _, d := range deps {
		satisfied := false
		for _, alt := range strings.Split(d, "|") {
			if installed[debName(alt)] {
				satisfied = true
				break
			}
		}
		if !satisfied {
			res.Missing[d] = true
		}
	}
	return res, nil
}

// debName strips the version constraint and architecture qualifier:
// " libc6:amd64 (>= 2.34) " → "libc6".
func debName(dep string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(dep), " ")
	name, _, _ = strings.Cut(name, "(")
	name, _, _ = strings.Cut(name, ":")
	return name
}

// parseStatus returns the names of installed packages and what they provide.
func parseStatus(r io.Reader) (map[string]bool, error) {
	installed := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var name, provides string
	var ok bool
	flush := func() {
		if ok && name != "" {
			installed[name] = true
			for _, p := range strings.Split(provides, ",") {
				if p = debName(p); p != "" {
					installed[p] = true
				}
			}
		}
		name, provides, ok = "", "", false
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, found := strings.Cut(line, ":")
		if !found || strings.HasPrefix(line, " ") {
			continue
		}
		switch k {
		case "Package":
			name = strings.TrimSpace(v)
		case "Provides":
			provides = v
		case "Status":
			ok = strings.HasSuffix(strings.TrimSpace(v), " installed")
		}
	}
	flush()
	return installed, sc.Err()
}

const rpmDB = "var/lib/rpm"

func checkRPM(ctx context.Context, root *os.Root, deps []string) (Result, error) {
	rpm, err := exec.LookPath("rpm")
	if err != nil {
		return Result{Why: "no rpm command on this node"}, nil
	}
	// Without its database rpm would create one under the root: ask only
	// where one exists, so checking changes nothing.
	if _, err := root.Stat(rpmDB); err != nil {
		return Result{Why: "no rpm database /" + rpmDB + " on this node"}, nil
	}
	// Every capability is followed by a marker nothing provides: rpm prints
	// one line per provider, so the markers' "no package provides" lines are
	// what splits the answer per capability.
	alts := map[string][]string{}
	var caps []string
	for _, d := range deps {
		if a, ok := rpmAlternatives(d); ok {
			alts[d] = a
			for _, c := range a {
				if !slices.Contains(caps, c) {
					caps = append(caps, c)
				}
			}
		}
	}
	args := []string{"--root", root.Name(), "--dbpath", "/" + rpmDB, "-q", "--whatprovides", "--"}
	for i, c := range caps {
		args = append(args, c, fmt.Sprintf("%s%d", rpmMarker, i))
	}
	cmd := exec.CommandContext(ctx, rpm, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return Result{}, fmt.Errorf("%s %s: %w", rpm, strings.Join(args, " "), err)
	}
	provided := map[string]bool{}
	i, found := 0, false
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case i >= len(caps):
		case strings.HasSuffix(l, " "+fmt.Sprintf("%s%d", rpmMarker, i)):
			provided[caps[i]] = found
			i, found = i+1, false
		case l != "" && !strings.HasPrefix(l, "no package provides "):
			found = true
		}
	}
	if i != len(caps) {
		return Result{Why: fmt.Sprintf("rpm -q --whatprovides answered for %d of %d capabilities", i, len(caps))}, nil
	}
	res := Result{Checked: true, Missing: map[string]bool{}}
	for d, a := range alts {
		if !slices.ContainsFunc(a, func(c string) bool { return provided[c] }) {
			res.Missing[d] = true
		}
	}
	return res, nil
}

// rpmMarker starts the names of the capabilities that separate the answers.
const rpmMarker = "reconcile-no-such-capability-"

// rpmAlternatives is the capabilities any one of which satisfies dep
// ("glibc >= 2.34" → glibc; "(iptables or nftables)" → both), or false for
// a rich dependency it does not read ("and", "if", "with", nesting): such a
// dependency is not reported, rather than reported wrongly.
func rpmAlternatives(dep string) ([]string, bool) {
	d := strings.TrimSpace(dep)
	if !strings.HasPrefix(d, "(") {
		name, _, _ := strings.Cut(d, " ")
		return []string{name}, name != ""
	}
	inner, ok := strings.CutSuffix(d[1:], ")")
	if !ok || strings.ContainsAny(inner, "()") {
		return nil, false
	}
	var caps []string
	for _, alt := range strings.Split(inner, " or ") {
		words := strings.Fields(alt)
		if len(words) == 0 || slices.ContainsFunc(words, func(w string) bool {
			return slices.Contains([]string{"and", "if", "else", "with", "without", "unless"}, w)
		}) {
			return nil, false
		}
		caps = append(caps, words[0])
	}
	return caps, true
}
