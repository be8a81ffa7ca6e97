package manifest

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nodeimage/reconcile/internal/platform"
)

// NamePattern is what tool and package names may look like: nothing a path,
// glob or regular expression would read specially. It is matched by hand, so
// nothing is compiled at start-up.
var NamePattern namePattern

type namePattern struct{}

// MatchString reports whether s is a valid tool or package name.
func (namePattern) MatchString(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && s[i] != '.' && s[i] != '+' && s[i] != '-' {
			return false
		}
	}
	return true
}

func (namePattern) String() string { return "^[a-z0-9][a-z0-9.+-]*$" }

func isLowerAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' }

// maxName bounds tool and package names.
const maxName = 64

// TempPrefix mirrors rootfs.TempPrefix, which this package cannot import
// (the manifest reads nothing of the disk): boot removes files with it.
const TempPrefix = ".reconcile-tmp-"

// stateRecordPath mirrors state.RecordPath, for the same reason.
const stateRecordPath = "var/lib/reconcile/state.json"

// minExitCode is the lowest exit code a tool may have: 1 to 6 are
// reconcile's own (6: interrupted).
const minExitCode = 7

// group is the entries of one tool for one distro and arch.
type group struct{ tool, distro, arch string }

type checker struct {
	m        *Manifest
	problems []Problem
}

func (c *checker) add(code, path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Code: code, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) missing(path string) { c.add(CodeMissing, path, "missing: this field is required") }

// check adds a problem when msg is not "".
func (c *checker) check(path, msg string) {
	if msg != "" {
		c.add(CodeInvalid, path, "%s", msg)
	}
}

// validate runs the rules of each field, then resolves every entry and runs
// the rules that span entries, each in O(n log n) of the entries. A component
// with a problem of its own, or under a path in bad, is left out of the rules
// that span entries: its mistake is reported once, not again as a duplicate
// or a kubelet without its kubectl.
func (m *Manifest) validate(bad map[string]bool) []Problem {
	c := &checker{m: m}
	c.tools()
	c.components()
	c.distros()
	broken := map[int]bool{}
	for _, p := range c.problems {
		broken[componentIndex(p.Path)] = true
	}
	for p := range bad {
		broken[componentIndex(p)] = true
	}
	c.entries(broken)
	c.pathClashes()
	return c.problems
}

func nameProblem(s string) string {
	switch {
	case len(s) > maxName:
		return fmt.Sprintf("%q is longer than %d characters", s, maxName)
	case !NamePattern.MatchString(s):
		return fmt.Sprintf("%q is not a valid name: expected %s (lower-case letters, digits, . + -)", s, NamePattern)
	}
	return ""
}

func diskPathProblem(p string) string {
	switch {
	case !path.IsAbs(p):
		return fmt.Sprintf("%q must be an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q must be clean (%s)", p, path.Clean(p))
	case p == "/":
		return fmt.Sprintf("%q must not be /", p)
	case strings.ContainsAny(p, "*?[]\\\n"):
		return fmt.Sprintf("%q must not hold glob characters, backslashes or newlines", p)
	}
	return ""
}

// ownedPathProblem is diskPathProblem for a path reconcile writes or
// cleans: no component may look like one of its temp files, which a later
// run removes.
func ownedPathProblem(p string) string {
	if msg := diskPathProblem(p); msg != "" {
		return msg
	}
	for part := range strings.SplitSeq(p, "/") {
		if strings.HasPrefix(part, TempPrefix) {
			return fmt.Sprintf("%q has a component starting with %s, the prefix of reconcile's temp files, which a later run removes", p, TempPrefix)
		}
	}
	return ""
}

func pkgPathProblem(p string) string {
	q := strings.TrimPrefix(p, "./")
	switch {
	case path.IsAbs(q):
		return fmt.Sprintf("%q must be relative to the package root (usr/bin/kubelet)", p)
	case path.Clean(q) != q || q == "." || strings.HasPrefix(q, "../") || q == "..":
		return fmt.Sprintf("%q must be a clean path inside the package, without ..", p)
	case strings.ContainsAny(q, "*?[]\\\n"):
		return fmt.Sprintf("%q must not hold glob characters, backslashes or newlines", p)
	}
	return ""
}

func (c *checker) tools() {
	for _, name := range sortedKeys(c.m.Tools) {
		t, at := c.m.Tools[name], "tools."+name
		c.check(at, nameProblem(name))
		if t.Package != "" {
			c.check(at+".package", nameProblem(t.Package))
		}
		if t.CacheDir != "" {
			c.check(at+".cacheDir", ownedPathProblem(t.CacheDir))
		}
		for i, p := range t.BinaryPaths {
			c.check(at+".binaryPaths["+strconv.Itoa(i)+"]", pkgPathProblem(p))
		}
		if t.Target != "" {
			c.check(at+".target", ownedPathProblem(t.Target))
		}
		switch {
		case t.ExitCode == 0:
		case t.ExitCode < minExitCode:
			c.add(CodeInvalid, at+".exitCode", "%d is below the minimum %d: 1 to %d are reconcile's own exit codes", t.ExitCode, minExitCode, minExitCode-1)
		case t.ExitCode > 255:
			c.add(CodeInvalid, at+".exitCode", "%d is above the maximum 255", t.ExitCode)
		}
		for i, a := range t.VersionArgs {
			if a == "" {
				c.missing(at + ".versionArgs[" + strconv.Itoa(i) + "]")
			}
		}
	}
}

func (c *checker) components() {
	switch {
	case c.m.Components == nil:
		c.missing("components")
	case len(c.m.Components) == 0:
		c.add(CodeInvalid, "components", "needs at least 1 item(s)")
	}
	for i, comp := range c.m.Components {
		at := "components[" + strconv.Itoa(i) + "]"
		if comp.Tool == "" {
			c.missing(at + ".tool")
		} else {
			c.check(at+".tool", nameProblem(comp.Tool))
		}
		if comp.Distro == "" {
			c.missing(at + ".distro")
		} else if _, err := platform.ParseDistro(comp.Distro); err != nil {
			c.add(CodeInvalid, at+".distro", "%v", err)
		}
		if comp.Arches != nil {
			if len(comp.Arches) == 0 {
				c.add(CodeInvalid, at+".arches", "needs at least 1 item(s)")
			}
			if len(slices.Compact(slices.Sorted(slices.Values(comp.Arches)))) != len(comp.Arches) {
				c.add(CodeInvalid, at+".arches", "lists an item more than once")
			}
			for j, a := range comp.Arches {
				if !slices.Contains(platform.Arches, platform.Arch(a)) {
					c.add(CodeInvalid, at+".arches["+strconv.Itoa(j)+"]", "%q is not one of: %s", a, platform.ArchList())
				}
			}
		}
		c.source(at, comp)
	}
}

// source checks that a component names exactly one source and what that
// source needs: a package its version; a tarball or an OCI artifact its
// version, the binary's path and a pinned digest for every arch it serves.
func (c *checker) source(at string, comp Component) {
	n := 0
	for _, s := range []string{comp.PackageVersion, comp.URL, comp.OCI} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		c.add(CodeInvalid, at, "packageVersion, url and oci are alternative sources: give exactly one")
		return
	case n == 0 && comp.Version == "":
		c.missing(at + ".packageVersion")
		return
	case n == 0:
		c.add(CodeMissing, at+".url", "missing: an entry with a version needs url (a tarball) or oci (an OCI artifact)")
		return
	}
	notFor := func(field, why string) {
		c.add(CodeInvalid, at+"."+field, "not allowed in %s", why)
	}
	switch comp.source() {
	case FromPackage:
		const why = "a package entry (its version is packageVersion, its paths are the tool's binaryPaths)"
		if comp.Version != "" {
			notFor("version", why)
		}
		if comp.SHA256 != nil {
			notFor("sha256", why)
		}
		if comp.Digest != nil {
			notFor("digest", why)
		}
		if comp.Path != "" {
			notFor("path", why)
		}
		return
	case FromURL:
		if comp.Digest != nil {
			notFor("digest", "a url entry: it pins sha256")
		}
		c.check(at+".url", templateProblem(comp.URL))
		c.check(at+".url", urlProblem(substitute(comp.URL, comp.Version)))
		c.digests(at+".sha256", comp, comp.SHA256, "")
	case FromOCI:
		if comp.SHA256 != nil {
			notFor("sha256", "an oci entry: it pins digest")
		}
		c.check(at+".oci", templateProblem(comp.OCI))
		c.check(at+".oci", refProblem(substitute(comp.OCI, comp.Version)))
		c.digests(at+".digest", comp, comp.Digest, "sha256:")
	}
	if comp.Version == "" {
		c.missing(at + ".version")
	}
	if comp.Path == "" {
		c.missing(at + ".path")
	} else {
		c.check(at+".path", pkgPathProblem(comp.Path))
	}
}

// digests checks a digest per arch: one for every arch the entry serves (an
// entry without one is refused: nothing unverified is ever extracted), none
// for another.
func (c *checker) digests(at string, comp Component, d map[string]string, prefix string) {
	arches := comp.arches()
	var lacking []string
	for _, a := range arches {
		if _, ok := d[a]; !ok {
			lacking = append(lacking, a)
		}
	}
	if len(lacking) > 0 {
		c.add(CodeDigest, at, "no pinned digest for %s: every arch the entry serves needs one (nothing unverified is extracted)", strings.Join(lacking, ", "))
	}
	for _, a := range sortedKeys(d) {
		if !slices.Contains(arches, a) {
			c.add(CodeInvalid, at+"."+a, "%q is not an arch the entry serves (%s)", a, strings.Join(arches, " "))
			continue
		}
		hex, ok := strings.CutPrefix(d[a], prefix)
		if !ok || !isSHA256Hex(hex) {
			c.add(CodeDigest, at+"."+a, "%q is not %s64 lower-case hex digits", d[a], prefix)
		}
	}
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if !isDigit(s[i]) && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return true
}

func substitute(tmpl, version string) string {
	// amd64 stands for every arch: the shape of the result is the same.
	return strings.NewReplacer("${arch}", string(platform.AMD64), "${version}", version).Replace(tmpl)
}

func templateProblem(s string) string {
	for rest := s; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			return ""
		}
		rest = rest[i:]
		if !strings.HasPrefix(rest, "${arch}") && !strings.HasPrefix(rest, "${version}") {
			return fmt.Sprintf("%q: only ${arch} and ${version} are substituted", s)
		}
		rest = rest[2:]
	}
}

// urlProblem accepts HTTPS, and plain HTTP only to a loopback host (a test
// or a local mirror): anything else could be changed on the way.
func urlProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL: %v", s, err)
	case u.Host == "" || u.Scheme != "https" && (u.Scheme != "http" || !loopback(u.Hostname())):
		return fmt.Sprintf("%q: expected an https:// URL (http:// only for localhost)", s)
	case u.User != nil:
		return fmt.Sprintf("%q holds credentials: they do not belong in a manifest", s)
	}
	return ""
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// refProblem checks an OCI reference: registry[:port]/repository:tag. The
// registry is explicit (no Docker Hub default) and the digest is pinned
// apart from the reference, per arch.
func refProblem(s string) string {
	bad := func(why string) string {
		return fmt.Sprintf("%q is not an OCI reference registry/repository:tag: %s", s, why)
	}
	if strings.Contains(s, "@") {
		return bad("give the digest under digest:, per arch, not in the reference")
	}
	registry, repoTag, ok := strings.Cut(s, "/")
	if !ok || !strings.ContainsAny(registry, ".:") && registry != "localhost" {
		return bad("it must start with a registry host (mcr.microsoft.com/...)")
	}
	host, port, hasPort := strings.Cut(registry, ":")
	if host == "" || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" ||
		hasPort && (port == "" || strings.Trim(port, "0123456789") != "") {
		return bad("bad registry host " + registry)
	}
	i := strings.LastIndexByte(repoTag, ':')
	if i < 0 {
		return bad("no tag")
	}
	repo, tag := repoTag[:i], repoTag[i+1:]
	for part := range strings.SplitSeq(repo, "/") {
		if part == "" || !isLowerAlnum(part[0]) || !isLowerAlnum(part[len(part)-1]) ||
			strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
			return bad("repository path components are lower-case letters and digits, separated by . _ -")
		}
	}
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' ||
		strings.Trim(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return bad("a tag is up to 128 letters, digits, _ . - not starting with . or -")
	}
	return ""
}

func repoIDProblem(id string) string {
	if id == "" || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") != "" {
		return fmt.Sprintf("%q is not a repository id: expected letters, digits and . _ : -", id)
	}
	return ""
}

func (c *checker) distros() {
	used := map[string]bool{}
	for _, comp := range c.m.Components {
		used[comp.Distro] = true
	}
	for _, name := range sortedKeys(c.m.DistroSettings) {
		s, at := c.m.DistroSettings[name], "distros."+name
		d, err := platform.ParseDistro(name)
		if err != nil {
			c.add(CodeInvalid, at, "%v", err)
			continue
		}
		if !used[name] {
			c.add(CodeUnused, at, "no component is for distro %q: a misspelt name?", name)
		}
		lists := []struct {
			field  string
			values []string
			format platform.Format
		}{
			{"aptSources", s.AptSources, platform.Deb},
			{"aptTestingSources", s.AptTestingSources, platform.Deb},
			{"dnfRepos", s.DnfRepos, platform.RPM},
		}
		for _, l := range lists {
			if len(l.values) > 0 && d.Format() != l.format {
				c.add(CodeInvalid, at+"."+l.field, "is for %s distros; %s uses %s packages", l.format, name, d.Format())
				continue
			}
			for i, v := range l.values {
				p := at + "." + l.field + "[" + strconv.Itoa(i) + "]"
				if l.format == platform.RPM {
					c.check(p, repoIDProblem(v))
				} else {
					c.check(p, diskPathProblem(v))
				}
			}
		}
	}
}

// entries resolves every component that has no problem of its own, keeps
// the result for Entries, and runs the rules that span entries.
func (c *checker) entries(broken map[int]bool) {
	m := c.m
	// Keys hold the group's number, not its strings: hashing the strings
	// of every key was a tenth of Parse.
	type baking struct {
		group   int
		version string
	}
	type serves struct {
		group int
		kind  rank
		text  string
	}
	type artifact struct{ arch, ref string }
	type found struct {
		index  int
		digest string
	}
	n := 0
	for _, comp := range m.Components {
		n += len(comp.arches())
	}
	groups := map[group]int{}
	// Sized for every entry: grown by rehashing, they were 8% of Parse.
	baked := make(map[baking]int, n)
	served := make(map[serves]int, n)
	ranges := map[group][]owned{}
	artifacts := map[artifact]found{}
	sets := map[string]map[string]map[string][]string{} // distro → arch → kubelet/kubectl → served
	unsure := map[string]bool{}                         // distros with a broken kubelet or kubectl
	tools := map[string]Tool{}
	m.all = make([]Entry, 0, n)
	m.entries = map[target][]int{}
	for i, comp := range m.Components {
		if broken[i] {
			unsure[comp.Distro] = true
			continue // its own problem is reported
		}
		at := "components[" + strconv.Itoa(i) + "]"
		base, err := m.entry(i, tools)
		if err != nil {
			fe := err.(*fieldError)
			c.add(CodeInvalid, at+"."+fe.field, "%v", fe.err)
			unsure[comp.Distro] = true
			continue
		}
		var constraintSpans []span
		if base.serve.kind == constraint {
			constraintSpans = spans(base.serve.c, base.serve.text)
		}
		for _, a := range comp.arches() {
			e := comp.forArch(base, platform.Arch(a))
			t := target{e.Distro, e.Arch}
			m.entries[t] = append(m.entries[t], len(m.all))
			m.all = append(m.all, e)
			g := group{comp.Tool, comp.Distro, a}
			gid, ok := groups[g]
			if !ok {
				gid = len(groups)
				groups[g] = gid
			}
			if j, dup := baked[baking{gid, e.Version.Upstream}]; dup {
				c.add(CodeDuplicate, at, "same tool, distro, arch (%s) and version as components[%d]: both would bake %s", a, j, e.Versioned)
				break // once per component, and not again as serving twice
			}
			baked[baking{gid, e.Version.Upstream}] = i
			if e.serve.kind == constraint {
				for _, s := range constraintSpans {
					ranges[g] = append(ranges[g], owned{s, i})
				}
			} else {
				sk := serves{gid, e.serve.kind, e.K8s}
				if j, dup := served[sk]; dup {
					c.add(CodeOverlap, at+".k8sVersion", "%s is served by components[%d] too for %s %s: boot could not choose", e.K8s, j, comp.Distro, a)
					break
				}
				served[sk] = i
			}
			if e.Source != FromPackage {
				ak := artifact{a, e.URL + e.Ref}
				if f, ok := artifacts[ak]; ok && f.digest != e.Digest {
					field := map[SourceKind]string{FromURL: "sha256", FromOCI: "digest"}[e.Source]
					c.add(CodeDigest, at+"."+field+"."+a, "%s is the artifact of components[%d] too, pinned there as %s: one artifact has one digest", ak.ref, f.index, f.digest)
				} else if !ok {
					artifacts[ak] = found{i, e.Digest}
				}
			}
			if comp.Tool == "kubelet" || comp.Tool == "kubectl" {
				if sets[comp.Distro] == nil {
					sets[comp.Distro] = map[string]map[string][]string{}
				}
				if sets[comp.Distro][a] == nil {
					sets[comp.Distro][a] = map[string][]string{}
				}
				sets[comp.Distro][a][comp.Tool] = append(sets[comp.Distro][a][comp.Tool], e.K8s)
			}
		}
	}
	c.overlaps(ranges)
	c.toolSets(sets, unsure)
	used := map[string]bool{}
	for _, comp := range m.Components {
		used[comp.Tool] = true
	}
	for _, name := range sortedKeys(m.Tools) {
		if !used[name] {
			c.add(CodeUnused, "tools."+name, "no component uses tool %q: a misspelt name?", name)
		}
	}
}

// overlaps refuses two constraints of one tool, distro and arch that admit a
// common cluster version: at the same rank, boot could not choose. A minor
// line or an exact version inside a constraint is no overlap: it is more
// specific and wins.
func (c *checker) overlaps(ranges map[group][]owned) {
	reported := map[int]bool{}
	keys := make([]group, 0, len(ranges))
	for k := range ranges {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b group) int {
		return strings.Compare(a.tool+" "+a.distro+" "+a.arch, b.tool+" "+b.distro+" "+b.arch)
	})
	for _, k := range keys {
		a, b, at, ok := firstOverlap(ranges[k])
		if !ok || reported[b] {
			continue
		}
		reported[b] = true
		ca, cb := c.m.Components[a], c.m.Components[b]
		c.add(CodeOverlap, "components["+strconv.Itoa(b)+"].k8sVersion",
			"%q and components[%d] (%s %s) %q both serve %d.%d.%d for %s %s: constraints of one tool must not overlap",
			cb.K8sVersion, a, ca.Tool, cmpVersion(ca), ca.K8sVersion, at[0], at[1], at[2], k.distro, k.arch)
	}
}

func cmpVersion(c Component) string {
	if c.PackageVersion != "" {
		return c.PackageVersion
	}
	return c.Version
}

// toolSets: a node needs kubelet and kubectl of the same cluster version: an
// image with kubelet 1.35 and no kubectl 1.35 is broken. Both must serve the
// same set, written the same way (exact versions, minor lines and
// constraints compared by their canonical text). Arches that differ the
// same way are reported together.
func (c *checker) toolSets(sets map[string]map[string]map[string][]string, unsure map[string]bool) {
	for _, d := range sortedKeys(sets) {
		if unsure[d] {
			continue
		}
		var msgs []string
		arches := map[string][]string{}
		for _, a := range sortedKeys(sets[d]) {
			kubelet, kubectl := sets[d][a]["kubelet"], sets[d][a]["kubectl"]
			slices.Sort(kubelet)
			slices.Sort(kubectl)
			if !slices.Equal(kubelet, kubectl) {
				msg := fmt.Sprintf("kubelet serves [%s] but kubectl serves [%s]: both must serve the same cluster versions",
					strings.Join(kubelet, " "), strings.Join(kubectl, " "))
				if arches[msg] == nil {
					msgs = append(msgs, msg)
				}
				arches[msg] = append(arches[msg], a)
			}
		}
		for _, msg := range msgs {
			c.add(CodeToolSets, "components", "%s %s: %s", d, strings.Join(arches[msg], ", "), msg)
		}
	}
}

// pathClashes finds boot targets and caches that would step on each other
// or on reconcile's own files: boot removes the other versioned binaries of
// a tool and the packages of its cache, and writes the state record, so a
// target that is one of those would be installed and then destroyed. Every
// check is a map lookup: linear in the tools.
func (c *checker) pathClashes() {
	// In manifest order, so a clash is reported on the later tool.
	var tools []string
	isTool := map[string]bool{}
	for _, comp := range c.m.Components {
		if NamePattern.MatchString(comp.Tool) && !isTool[comp.Tool] {
			isTool[comp.Tool] = true
			tools = append(tools, comp.Tool)
		}
	}
	inside := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	stateDir := path.Dir("/" + stateRecordPath)
	targets := map[string]string{}
	caches := map[string]string{} // cache dir → first tool with it
	settings := make([]Tool, len(tools))
	for i, name := range tools {
		t := c.m.Tool(name)
		settings[i] = t
		at := "tools." + name + ".target"
		switch {
		case inside(t.Target, stateDir):
			c.add(CodePathClash, at, "%s is under %s, where reconcile keeps its state", t.Target, stateDir)
		case path.Dir(t.Target) == BinDir && versionedBy(path.Base(t.Target), isTool) != "":
			c.add(CodePathClash, at, "%s has the name of a versioned binary of %s, which boot removes", t.Target, versionedBy(path.Base(t.Target), isTool))
		case targets[t.Target] != "":
			c.add(CodePathClash, at, "%s is the target of %s too", t.Target, targets[t.Target])
		}
		targets[t.Target] = name
		cacheAt := "tools." + name + ".cacheDir"
		switch {
		case inside(t.CacheDir, stateDir):
			c.add(CodePathClash, cacheAt, "%s is under %s, where reconcile keeps its state", t.CacheDir, stateDir)
		case t.CacheDir == BinDir:
			c.add(CodePathClash, cacheAt, "%s is where the versioned binaries live", BinDir)
		case caches[t.CacheDir] == "":
			caches[t.CacheDir] = name
		}
	}
	for i, name := range tools {
		// A cache in BinDir or the state dir is reported above.
		if t := settings[i].Target; caches[path.Dir(t)] != "" {
			c.add(CodePathClash, "tools."+name+".target", "%s is in the package cache of %s, %s", t, caches[path.Dir(t)], path.Dir(t))
		}
	}
}

// versionedBy is the tool whose versioned binary a file name in BinDir
// would be ("kubelet-1.35.7" → kubelet), or "".
func versionedBy(name string, tools map[string]bool) string {
	for i := range len(name) - 1 {
		if name[i] == '-' && isDigit(name[i+1]) && tools[name[:i]] {
			return name[:i]
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
