package cli

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestExitCodesAgree holds --help and the README to the same exit codes, and
// both to the constants the code returns.
func TestExitCodesAgree(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := func(re string, text string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
			for _, c := range strings.Split(m[1], " / ") {
				out = append(out, strings.TrimSpace(c))
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	section := helpText[strings.Index(helpText, "EXIT CODES"):]
	section = section[:strings.Index(section, "\n\n")]
	help := codes(`(?m)^    (\d+)  `, section)
	doc := codes(`(?m)^\| ([\d /]+) \|`, string(readme))
	if !slices.Equal(help, doc) {
		t.Errorf("--help lists exit codes %v, the README %v", help, doc)
	}
	for _, c := range []int{ExitOK, ExitFailure, ExitBadInput, ExitVerify, ExitLocked, ExitChanges, ExitInterrupted} {
		if !slices.Contains(help, strconv.Itoa(c)) {
			t.Errorf("exit code %d is not documented in --help", c)
		}
	}
}
