package platform

import (
	"strings"
	"testing"
)

func TestParseDistro(t *testing.T) {
	tests := []struct {
		in     string
		format Format
		err    string
	}{
		{"ubuntu-24.04", Deb, ""},
		{"debian-12", Deb, ""},
		{"azurelinux-3.0", RPM, ""},
		{"amzn-2023", RPM, ""},
		{"ubuntu", "", "is not <id>-<version_id>"},
		{"-24.04", "", "is not <id>-<version_id>"},
		{"gentoo-2.17", "", "known ids are almalinux, amzn, azurelinux"},
		{"ubuntu-24.04/../x", "", "only digits, dots and lower-case letters"},
	}
	for _, tc := range tests {
		d, err := ParseDistro(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDistro(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.Format() != tc.format || d.String() != tc.in {
			t.Errorf("ParseDistro(%q) = %v (%s), %v", tc.in, d, d.Format(), err)
		}
	}
}

func TestReadOSRelease(t *testing.T) {
	d, err := ReadOSRelease(strings.NewReader("# comment\nNAME=\"Azure Linux\"\nID=azurelinux\nVERSION_ID=\"3.0\"\n"))
	if err != nil || d.String() != "azurelinux-3.0" || !d.Known() {
		t.Errorf("got %v %v", d, err)
	}
	// A distro reconcile does not know is read, not refused: the caller
	// says the manifest has nothing for it.
	d, err = ReadOSRelease(strings.NewReader("ID=opensuse-leap\nVERSION_ID='15.6'\n"))
	if err != nil || d.String() != "opensuse-leap-15.6" || d.Known() {
		t.Errorf("got %v %v", d, err)
	}
	if _, err := ReadOSRelease(strings.NewReader("NAME=x\n")); err == nil {
		t.Error("os-release without ID accepted")
	}
}

func TestArchSpellings(t *testing.T) {
	for in, want := range map[string]Arch{"amd64": AMD64, "x86_64": AMD64, "arm64": ARM64, "aarch64": ARM64, "all": Any, "noarch": Any} {
		if got, err := ParseArch(in); err != nil || got != want {
			t.Errorf("ParseArch(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseArch("ppc64el"); err == nil {
		t.Error("ppc64el accepted")
	}
	for _, tc := range []struct {
		a         Arch
		deb, rpm  string
		runsOnAMD bool
	}{{AMD64, "amd64", "x86_64", true}, {ARM64, "arm64", "aarch64", false}, {Any, "all", "noarch", true}} {
		if tc.a.In(Deb) != tc.deb || tc.a.In(RPM) != tc.rpm || tc.a.Runs(AMD64) != tc.runsOnAMD {
			t.Errorf("%s: %s %s %v", tc.a, tc.a.In(Deb), tc.a.In(RPM), tc.a.Runs(AMD64))
		}
	}
}

// FuzzReadOSRelease: an image's os-release is untrusted; whatever it holds
// gives a distro with an ID and a VERSION_ID, or an error, never a panic.
func FuzzReadOSRelease(f *testing.F) {
	f.Add("ID=ubuntu\nVERSION_ID=\"24.04\"\n")
	f.Add("NAME=\"Microsoft Azure Linux\"\nVERSION_ID=\"3.0\"\nID=azurelinux\n# comment\n")
	f.Add("ID='rhel'\nVERSION_ID=9.4\nID_LIKE=\"fedora\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ReadOSRelease(strings.NewReader(s))
		if err == nil && (d.ID == "" || d.VersionID == "") {
			t.Fatalf("ReadOSRelease(%q) = %+v without an error", s, d)
		}
	})
}
