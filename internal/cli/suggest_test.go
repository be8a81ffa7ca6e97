package cli

import (
	"strings"
	"testing"
)

func TestUnknownFlagSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mdoe=bake"}, "unknown flag --mdoe: did you mean --mode?"},
		{[]string{"--mode=bake", "--dryrun"}, "did you mean --dry-run?"},
		{[]string{"--mode=boot", "--k8s-versoin=1.34.10"}, "did you mean --k8s-version?"},
		{[]string{"--mode=bake", "--force"}, "unknown flag --force (see reconcile --help)"},
	} {
		_, err := parse(tc.args, func(string) string { return "" }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"mode", "mode", 0}, {"mdoe", "mode", 1}, {"mod", "mode", 1}, {"root", "rot", 1},
		{"", "abc", 3}, {"force", "mode", 3}, {"kitten", "sitting", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
