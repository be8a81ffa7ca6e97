package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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
	out, err := a.c.run(ctx, "", aptNotFound, "apt-cache", "-o", "APT::Cache::AllVersions=1", "show", aptSpec(name, arch))
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
		recs = append(recs, record{version: v, spec: spec, file: f["Filename"], size: size})
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
func (a *apt) update(ctx context.Context) error {
	if _, err := a.c.run(ctx, "", nil, "apt-get", "-q", "update"); err != nil {
		return fmt.Errorf("refreshing the apt lists: %w", err)
	}
	return nil
}

// download runs "apt-get download", which writes into its working
// directory, under the base name of the index's Filename.
func (a *apt) download(ctx context.Context, rec record, _ platform.Arch, dir string) error {
	_, err := a.c.run(ctx, dir, aptNotFound, "apt-get", "-q", "download", rec.spec)
	return err
}
