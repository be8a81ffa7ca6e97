package cli

import (
	"flag"
	"strings"
)

// flagError rewrites the flag package's "flag provided but not defined:
// -mdoe" into one that names the flag as the user typed it and, when one is
// close, the flag that was meant.
func flagError(fs *flag.FlagSet, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return badInput("%v (see reconcile --help)", err)
	}
	best, bestDist := "", 3 // more than two edits away is no longer a typo
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) < 2 {
			return
		}
		if d := editDistance(name, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best != "" {
		return badInput("unknown flag --%s: did you mean --%s? (see reconcile --help)", name, best)
	}
	return badInput("unknown flag --%s (see reconcile --help)", name)
}

// editDistance is the Damerau–Levenshtein distance (optimal string
// alignment), so a swap of two letters (mdoe → mode) counts as one edit.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
