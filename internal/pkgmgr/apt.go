package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// apt lists versions with "apt-cache show name:arch", whose stanzas carry
// the architecture and file name of every version, and downloads with
// "apt-get download name:arch=version", which writes into its working
// directory and touches neither dpkg's database nor apt's archive cache.
type apt struct{ c *commander }

func (a *apt) command() string         { return "apt-get" }
func (a *apt) format() platform.Format { return platform.Deb }

// aptNotFound recognises apt's answers that a package or version does not
// exist, which no retry can change.
func aptNotFound(out string) bool {
	return containsAny(out, "No packages found", "Unable to locate package", "was not found",
		"Couldn't find any package", "is purely virtual", "has no installation candidate")
}

// aptSpec names the package for one architecture; a foreign architecture
// (arm64 on an amd64 node) is only visible with the qualifier.
func aptSpec(name string, arch platform.Arch) string {
	if arch == platform.Any {
		return name
	}
	return name + ":" + arch.In(platform.Deb)
}

func (a *apt) records(ctx context.Context, name string, arch platform.Arch) ([]record, error) {
	out, err := a.run(ctx, "", nil, aptNotFound, "apt-cache", "-o", "APT::Cache::AllVersions=1", "show", aptSpec(name, arch))
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && aptNotFound(ce.Output) {
			// No lists yet, or a package these repositories never had.
			return nil, nil
		}
		return nil, err
	}
	recs, bad := parseAptShow(out, name, arch)
	for _, err := range bad {
		a.c.log.WarnContext(ctx, "ignoring a version apt offers", "package", name, "err", err)
	}
	return recs, nil
}

// parseAptShow reads deb822 stanzas and keeps those of package name built for
// arch. Versions that do not parse are returned as errors beside the records,
// so one odd entry in a repository does not hide the others.
func parseAptShow(data []byte, name string, arch platform.Arch) ([]record, []error) {
	var (
		recs []record
		bad  []error
	)
	flush := func(f map[string]string) {
		if len(f) == 0 || f["Package"] != name || f["Architecture"] != arch.In(platform.Deb) {
			return
		}
		v, err := pkgversion.Parse(platform.Deb, f["Version"])
		if err != nil {
			bad = append(bad, fmt.Errorf("%s %s: %w", name, arch, err))
			return
		}
		size, _ := strconv.ParseInt(f["Size"], 10, 64) // 0: unknown, not checked
		// The version is spelled as the repository spells it: apt-get's
		// "=version" matches the string.
		spec := aptSpec(name, arch) + "=" + f["Version"]
		recs = append(recs, record{version: v, spec: spec, size: size})
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20) // descriptions can be long
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush(fields)
			fields = map[string]string{}
		case line[0] == ' ' || line[0] == '\t':
			// Continuation of a multi-line field (Description).
		default:
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
	}
	flush(fields)
	if err := sc.Err(); err != nil {
		bad = append(bad, fmt.Errorf("reading apt-cache output: %w", err))
	}
	return recs, bad
}

// update runs "apt-get update": node images often ship with the lists
// removed, and lists baked weeks ago do not know this week's patch release.
// With configured sources only those are refreshed, as the seed refreshes
// only microsoft-prod.list; the lists of the others stay (List-Cleanup off).
func (a *apt) update(ctx context.Context, pre bool) error {
	files := slices.Clone(a.c.sources)
	if pre && len(files) > 0 {
		// With no sources configured every list is refreshed, the
		// testing one among them.
		files = append(files, a.c.testing...)
	}
	err := a.withConfig(func(conf string) error {
		var opts []string
		if len(files) > 0 {
			parts := filepath.Join(filepath.Dir(conf), "sources.list.d")
			if err := copySources(a.c.root, files, parts); err != nil {
				return err
			}
			opts = []string{"-o", "Dir::Etc::SourceList=" + filepath.Join(parts, "none"), "-o", "Dir::Etc::SourceParts=" + parts,
				"-o", "APT::Get::List-Cleanup=0"}
		}
		if !a.c.hostRoot() {
			// apt creates neither the lists directory nor its partial/.
			if err := mkdirUnder(a.c.root, "var/lib/apt/lists/partial"); err != nil {
				return err
			}
		}
		_, err := a.c.run(ctx, "", aptEnv(conf), nil, "apt-get", append(append([]string{"-q"}, opts...), "update")...)
		return err
	})
	if err != nil {
		return fmt.Errorf("refreshing the apt lists: %w", err)
	}
	return nil
}

// download runs "apt-get download", which writes into its working
// directory, under the base name of the index's Filename. That directory is
// root's private one, which apt's _apt sandbox user cannot write: apt would
// warn and download as root all the same, so it is told so.
func (a *apt) download(ctx context.Context, rec record, _ platform.Arch, dir string) error {
	_, err := a.run(ctx, dir, []string{"-o", "APT::Sandbox::User=root"}, aptNotFound, "apt-get", "-q", "download", rec.spec)
	return err
}

// run runs an apt command with opts before args, with the root's
// configuration when the root is not the node.
func (a *apt) run(ctx context.Context, dir string, opts []string, final func(string) bool, name string, args ...string) ([]byte, error) {
	var out []byte
	err := a.withConfig(func(conf string) error {
		var err error
		out, err = a.c.run(ctx, dir, aptEnv(conf), final, name, append(slices.Clone(opts), args...)...)
		return err
	})
	return out, err
}

// withConfig calls fn with the path of an apt.conf for the root, in a
// private directory fn may add to and that is removed afterwards; for the
// node itself the path is "" (apt's own configuration).
//
// The file is given as APT_CONFIG, which apt reads before anything else, so
// that setting the configuration parts to /dev/null keeps apt from reading
// any apt.conf.d: "-o" options come too late for that. Dir points every
// relative path (sources, lists, cache, logs) into the root; the binary
// caches are not written; dpkg's status is not read (a download resolves
// nothing against what is installed, and the root's file could be a FIFO
// that blocks apt); both architectures reconcile knows are listed, since a
// root need not be of the host's.
func (a *apt) withConfig(fn func(conf string) error) error {
	if a.c.hostRoot() {
		return fn("")
	}
	return a.c.withPrivateDir(func(dir string) error {
		return a.writeConfig(dir, fn)
	})
}

func (a *apt) writeConfig(dir string, fn func(conf string) error) error {
	conf := filepath.Join(dir, "apt.conf")
	var b strings.Builder
	fmt.Fprintf(&b, "Dir %s;\n", aptQuote(strings.TrimSuffix(a.c.root, "/")+"/"))
	b.WriteString("Dir::Etc::Parts \"/dev/null\";\nDir::Etc::Main \"/dev/null\";\n")
	b.WriteString("Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\nDir::State::status \"/dev/null\";\n")
	b.WriteString("APT::Architectures { \"amd64\"; \"arm64\"; };\n")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing apt's private configuration: %w", err)
	}
	return fn(conf)
}

// aptQuote quotes a value for apt.conf, which has no escapes; New refuses a
// root holding a quote or a line break.
func aptQuote(s string) string { return `"` + s + `"` }

func aptEnv(conf string) []string {
	if conf == "" {
		return nil
	}
	return []string{"APT_CONFIG=" + conf}
}
