// Package binver reads what an extracted binary says about itself — its
// ELF machine and the version it was built as — without running it: bake
// executes nothing that came out of a package.
package binver

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// Where a version was read from.
const (
	FromBuildInfo = "build info"     // the -X …version.gitVersion= of the Go build's -ldflags
	FromData      = "read-only data" // the version string in the binary's read-only data
)

// NotReadable is what is recorded when a binary names no version.
const NotReadable = "version not readable"

// maxScan bounds the scan of read-only data: a 100 MB kubelet has about
// 40 MB of it, and a hostile binary must not make bake read without end.
const maxScan = 128 << 20

// Info is what a binary says about itself.
type Info struct {
	Machine elf.Machine
	// Arch is Machine in reconcile's spelling, "" for a machine it does not
	// know.
	Arch platform.Arch
	// Version is the version the binary names ("v1.34.10"), "" when none
	// could be read.
	Version string
	From    string // FromBuildInfo or FromData, "" with no Version
	// Interp is the dynamic loader a dynamically linked binary names
	// ("/lib64/ld-linux-x86-64.so.2"), "" for a static one.
	Interp string
}

// machines maps the architectures a manifest may name to their ELF machine.
var machines = map[platform.Arch]elf.Machine{
	platform.AMD64: elf.EM_X86_64,
	platform.ARM64: elf.EM_AARCH64,
}

// Machine is the ELF machine of arch, and whether reconcile knows one.
func Machine(arch platform.Arch) (elf.Machine, bool) {
	m, ok := machines[arch]
	return m, ok
}

// ErrNotELF is a file that is no ELF binary.
var ErrNotELF = errors.New("not an ELF binary")

// Read reads the ELF header, then the version: first the Go build info's
// -ldflags, else, when want is set, want's version in the read-only data.
func Read(r io.ReaderAt, want *pkgversion.Version) (Info, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrNotELF, err)
	}
	info := Info{Machine: f.Machine, Interp: interp(f)}
	for a, m := range machines {
		if m == f.Machine {
			info.Arch = a
		}
	}
	if v := fromBuildInfo(r); v != "" {
		info.Version, info.From = v, FromBuildInfo
		return info, nil
	}
	if want != nil {
		if v, err := fromData(f, *want); err != nil {
			return info, err
		} else if v != "" {
			info.Version, info.From = v, FromData
		}
	}
	return info, nil
}

// maxInterp bounds the PT_INTERP segment read: a path, never more.
const maxInterp = 4096

// interp is the path in the binary's PT_INTERP segment, "" when it has none
// or it is not a plausible path.
func interp(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP || p.Filesz == 0 || p.Filesz > maxInterp {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return ""
		}
		return strings.TrimRight(string(b), "\x00")
	}
	return ""
}

// CheckArch refuses a binary whose machine is not arch's.
func (i Info) CheckArch(arch platform.Arch) error {
	want, ok := machines[arch]
	if !ok || i.Machine == want {
		return nil
	}
	return fmt.Errorf("ELF machine %s, want %s for %s", i.Machine, want, arch)
}

// Described is the version for a record or a report: NotReadable when none.
func (i Info) Described() string {
	if i.Version == "" {
		return NotReadable
	}
	return i.Version + " (" + i.From + ")"
}

// fromBuildInfo finds -X <pkg>/version.gitVersion=<v> in the build's
// -ldflags, as Kubernetes' build sets it (k8s.io/component-base/version,
// k8s.io/client-go/pkg/version, a cloud provider's pkg/version).
func fromBuildInfo(r io.ReaderAt) string {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "-ldflags" {
			return gitVersion(s.Value)
		}
	}
	return ""
}

func gitVersion(ldflags string) string {
	fields := strings.Fields(ldflags)
	for i, f := range fields {
		var def string
		switch {
		case f == "-X" && i+1 < len(fields):
			def = fields[i+1]
		case strings.HasPrefix(f, "-X="):
			def = f[len("-X="):]
		default:
			continue
		}
		sym, val, ok := strings.Cut(strings.Trim(def, `'"`), "=")
		if ok && strings.HasSuffix(sym, "version.gitVersion") && val != "" {
			return val
		}
	}
	return ""
}

// fromData scans the read-only sections for want, bounded by maxScan.
func fromData(f *elf.File, want pkgversion.Version) (string, error) {
	const chunk, overlap = 1 << 20, 256
	budget := int64(maxScan)
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&(elf.SHF_WRITE|elf.SHF_EXECINSTR) != 0 {
			continue
		}
		buf := make([]byte, chunk+overlap)
		size := min(int64(s.Size), budget)
		budget -= size
		for off := int64(0); off < size; off += chunk {
			n, err := s.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if err != nil && err != io.EOF {
				return "", fmt.Errorf("reading section %s: %w", s.Name, err)
			}
			if want.ReportedIn(string(buf[:n])) {
				return "v" + want.Upstream, nil
			}
		}
		if budget <= 0 {
			break
		}
	}
	return "", nil
}
