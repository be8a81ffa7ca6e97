package binver_test

import (
	"bytes"
	"debug/elf"
	"os"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/binver"
	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

func build(t *testing.T, arch platform.Arch, version string) []byte {
	t.Helper()
	b, err := pkgbuild.Binary(arch, version)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withoutBuildInfo breaks the build info's magic, as a binary built
// without Go's build info (or not by Go) has none.
func withoutBuildInfo(t *testing.T, b []byte) []byte {
	t.Helper()
	b = bytes.Clone(b)
	i := bytes.Index(b, []byte("\xff Go buildinf:"))
	if i < 0 {
		t.Fatal("no build info in the test binary")
	}
	b[i+1] = 'X'
	return b
}

func TestReadBuildInfo(t *testing.T) {
	for _, arch := range []platform.Arch{platform.AMD64, platform.ARM64} {
		info, err := binver.Read(bytes.NewReader(build(t, arch, "1.34.10")), nil)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := binver.Machine(arch)
		if info.Version != "v1.34.10" || info.From != binver.FromBuildInfo || info.Machine != want || info.Arch != arch {
			t.Errorf("%s: got %+v", arch, info)
		}
		if err := info.CheckArch(arch); err != nil {
			t.Error(err)
		}
	}
	info, _ := binver.Read(bytes.NewReader(build(t, platform.ARM64, "1.34.10")), nil)
	if err := info.CheckArch(platform.AMD64); err == nil {
		t.Error("an arm64 binary passed as amd64")
	}
}

func TestReadData(t *testing.T) {
	b := withoutBuildInfo(t, build(t, platform.AMD64, "1.35.7"))
	want := pkgversion.MustParse(platform.Deb, "1.35.7-1.1")
	info, err := binver.Read(bytes.NewReader(b), &want)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "v1.35.7" || info.From != binver.FromData {
		t.Errorf("got %+v, want v1.35.7 from the read-only data", info)
	}
	// 1.35.70 must not be taken for 1.35.7, nor another version for it.
	other := pkgversion.MustParse(platform.Deb, "1.35.70-1.1")
	info, err = binver.Read(bytes.NewReader(b), &other)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "" || info.Described() != binver.NotReadable {
		t.Errorf("got %+v, want no version", info)
	}
}

func TestReadNotELF(t *testing.T) {
	if _, err := binver.Read(bytes.NewReader([]byte("#!/bin/sh\necho v1.34.10\n")), nil); err == nil {
		t.Error("a shell script read as an ELF")
	}
}

func FuzzRead(f *testing.F) {
	b, err := pkgbuild.Binary(platform.AMD64, "1.34.10")
	if err != nil {
		f.Fatal(err)
	}
	// The header and section table stay whole; fuzzing mutates a small
	// prefix-sized seed to keep each run fast.
	f.Add(b[:4096])
	f.Add([]byte("\x7fELF"))
	want := pkgversion.MustParse(platform.Deb, "1.34.10-1.1")
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := binver.Read(bytes.NewReader(data), &want)
		if err == nil && info.Machine == elf.EM_NONE && info.Arch != "" {
			t.Errorf("arch %s for machine none", info.Arch)
		}
	})
}

// TestEveryArchHasAMachine: each architecture a manifest may name has its
// ELF machine, so the arch check never passes a binary unchecked.
func TestEveryArchHasAMachine(t *testing.T) {
	for _, a := range platform.Arches {
		if _, ok := binver.Machine(a); !ok {
			t.Errorf("no ELF machine for %s", a)
		}
	}
}

// TestReadInterp: a dynamically linked binary names its loader (the host's
// own /bin/true, as a C tool is built), a static Go one names none.
func TestReadInterp(t *testing.T) {
	f, err := os.Open("/bin/true")
	if err != nil {
		t.Skip("no /bin/true on this host")
	}
	defer f.Close()
	want := ""
	if ef, err := elf.NewFile(f); err == nil {
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				want = "dynamic"
			}
		}
	}
	info, err := binver.Read(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want == "dynamic" && !strings.HasPrefix(info.Interp, "/") {
		t.Errorf("/bin/true: Interp = %q, want its loader's path", info.Interp)
	}
	static, err := binver.Read(bytes.NewReader(build(t, platform.Host(), "1.34.10")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if static.Interp != "" {
		t.Errorf("a static Go binary: Interp = %q", static.Interp)
	}
}
