// Package deps tells which of a package's dependencies the node lacks. Boot
// bypasses the package manager, so nothing else would notice that kubelet's
// conntrack or iptables is missing until kubelet fails at run time.
package deps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/nodeimage/reconcile/internal/platform"
)

// Result says which dependency strings are unsatisfied. Checked is false
// when the node's package database could not be read (no dpkg status, no
// rpm): then nothing is known to be missing.
type Result struct {
	Checked bool
	Missing map[string]bool
	Why     string // when !Checked
}

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
	st, err := root.Open(dpkgStatus)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{Why: "no /" + dpkgStatus + " on this node"}, nil
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
	caps := make([]string, len(deps))
	for i, d := range deps {
		caps[i], _, _ = strings.Cut(strings.TrimSpace(d), " ")
	}
	args := append([]string{"--root", root.Name(), "--dbpath", "/" + rpmDB, "-q", "--whatprovides", "--"}, caps...)
	cmd := exec.CommandContext(ctx, rpm, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return Result{}, fmt.Errorf("%s %s: %w", rpm, strings.Join(args, " "), err)
	}
	// rpm answers one line per capability, in order.
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) != len(caps) {
		return Result{Why: fmt.Sprintf("rpm -q --whatprovides answered %d lines for %d capabilities", len(lines), len(caps))}, nil
	}
	res := Result{Checked: true, Missing: map[string]bool{}}
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("no package provides")) {
			res.Missing[deps[i]] = true
		}
	}
	return res, nil
}
