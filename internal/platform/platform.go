// Package platform names the distros and CPU architectures reconcile knows,
// and maps each to the spelling its package format uses.
package platform

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
)

// Format is a package format.
type Format string

const (
	Deb Format = "deb"
	RPM Format = "rpm"
)

// families maps an os-release ID to the package format its packages come in.
var families = map[string]Format{
	"ubuntu":     Deb,
	"debian":     Deb,
	"azurelinux": RPM,
	"mariner":    RPM,
	"rhel":       RPM,
	"centos":     RPM,
	"rocky":      RPM,
	"almalinux":  RPM,
	"fedora":     RPM,
	"amzn":       RPM,
}

// KnownIDs lists the distro IDs reconcile knows, sorted, for error messages.
func KnownIDs() []string {
	ids := make([]string, 0, len(families))
	for id := range families {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Distro is an os-release ID and VERSION_ID, written "<id>-<version_id>".
type Distro struct {
	ID        string
	VersionID string
}

func (d Distro) String() string { return d.ID + "-" + d.VersionID }

// Format is the package format of the distro's family.
func (d Distro) Format() Format { return families[d.ID] }

// ParseDistro reads "<id>-<version_id>", e.g. "ubuntu-24.04" or "azurelinux-3.0".
func ParseDistro(s string) (Distro, error) {
	id, ver, ok := strings.Cut(s, "-")
	if !ok || id == "" || ver == "" {
		return Distro{}, fmt.Errorf("%q is not <id>-<version_id> (e.g. ubuntu-24.04)", s)
	}
	if _, known := families[id]; !known {
		return Distro{}, fmt.Errorf("unknown distro id %q in %q: known ids are %s", id, s, strings.Join(KnownIDs(), ", "))
	}
	for _, r := range ver {
		if !(r >= '0' && r <= '9' || r == '.' || r >= 'a' && r <= 'z') {
			return Distro{}, fmt.Errorf("version_id %q in %q: only digits, dots and lower-case letters are allowed", ver, s)
		}
	}
	return Distro{ID: id, VersionID: ver}, nil
}

// maxOSRelease bounds what is read of os-release: a real one is a few
// hundred bytes, and an image's file is not trusted to end.
const maxOSRelease = 64 << 10

// ReadOSRelease parses os-release(5) and returns the distro it names.
func ReadOSRelease(r io.Reader) (Distro, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxOSRelease))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals[k] = strings.Trim(v, `"'`)
	}
	if err := sc.Err(); err != nil {
		return Distro{}, err
	}
	if vals["ID"] == "" || vals["VERSION_ID"] == "" {
		return Distro{}, fmt.Errorf("os-release has no ID or VERSION_ID")
	}
	// An unknown ID is not an error here: such a host is one the manifest
	// has nothing for, which callers report as such.
	return Distro{ID: strings.ToLower(vals["ID"]), VersionID: vals["VERSION_ID"]}, nil
}

// Known reports whether the distro's ID is in a family reconcile knows.
func (d Distro) Known() bool { _, ok := families[d.ID]; return ok }

// Arch is a CPU architecture in Go's spelling: "amd64" or "arm64".
type Arch string

const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64"
	// Any stands for packages that run everywhere (deb "all", rpm "noarch").
	Any Arch = "all"
)

// Arches lists the architectures a manifest may name.
var Arches = []Arch{AMD64, ARM64}

// ArchList is Arches for messages: "amd64 arm64".
func ArchList() string {
	names := make([]string, len(Arches))
	for i, a := range Arches {
		names[i] = string(a)
	}
	return strings.Join(names, " ")
}

// Host is the architecture this binary runs on.
func Host() Arch { return Arch(runtime.GOARCH) }

// ParseArch accepts the Go, deb and rpm spellings of an architecture.
func ParseArch(s string) (Arch, error) {
	switch s {
	case "amd64", "x86_64":
		return AMD64, nil
	case "arm64", "aarch64":
		return ARM64, nil
	case "all", "noarch":
		return Any, nil
	}
	return "", fmt.Errorf("unknown architecture %q: expected amd64 (x86_64) or arm64 (aarch64)", s)
}

// In returns the architecture's name in a package format.
func (a Arch) In(f Format) string {
	if f == RPM {
		switch a {
		case AMD64:
			return "x86_64"
		case ARM64:
			return "aarch64"
		case Any:
			return "noarch"
		}
	}
	return string(a)
}

// Runs reports whether a package built for a serves a host of arch host.
func (a Arch) Runs(host Arch) bool { return a == host || a == Any }
