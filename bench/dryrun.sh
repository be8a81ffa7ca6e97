#!/usr/bin/env bash
# Start-up and --dry-run cost, compared in the same hyperfine run with a Go
# hello-world built by the same toolchain (the floor of any Go command):
#   start-up: reconcile --version  vs  hello             goal: ≤ 3 ms over it
#   dry-run:  a 1,000-entry manifest vs a 2-entry one     goal: ≤ 4× and ≤ 25 ms
# Prints a markdown table; with BENCH_OUT set, leaves it and the hyperfine
# JSON there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_need go hyperfine jq
RUNS=${RUNS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$work/reconcile" ./cmd/reconcile)
mkdir -p "$work/hello"
printf 'package main\n\nimport "os"\n\nfunc main() { os.Stdout.WriteString("hello\\n") }\n' >"$work/hello/main.go"
printf 'module hello\n\ngo 1.26\n' >"$work/hello/go.mod"
(cd "$work/hello" && CGO_ENABLED=0 go build -trimpath -o "$work/hello-bin" .)
# The same hello-world importing every package reconcile links (standard
# library and modules, nothing of reconcile's own), so that their package
# initialisation, which no code of reconcile's can skip, is measured apart.
mkdir -p "$work/floor"
{
	printf 'package main\n\nimport (\n\t"os"\n'
	(cd "$repo" && CGO_ENABLED=0 go list -deps ./cmd/reconcile) |
		grep -v -e '^github.com/nodeimage/' -e '/internal\(/\|$\)' -e '^internal/' -e '^vendor/' -e '^unsafe$' -e '^os$' |
		sed 's/.*/\t_ "&"/'
	printf ')\n\nfunc main() { os.Stdout.WriteString("hello\\n") }\n'
} >"$work/floor/main.go"
sed 's#^module .*#module floor#' "$repo/go.mod" >"$work/floor/go.mod"
cp "$repo/go.sum" "$work/floor/"
(cd "$work/floor" && CGO_ENABLED=0 go build -trimpath -o "$work/floor-bin" .)

# kubelet and kubectl at the same versions, as real manifests pair them.
manifest() {
	local pairs=$1 i
	echo "components:"
	for ((i = 0; i < pairs; i++)); do
		printf '  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.%d.%d-ubuntu24.04u1"}\n' $((30 + i / 100)) $((i % 100))
		printf '  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.%d.%d-ubuntu24.04u1"}\n' $((30 + i / 100)) $((i % 100))
	done
}
manifest 1 >"$work/m2.yaml"
manifest 500 >"$work/m1000.yaml"
mkdir -p "$work/root"
dry="$work/reconcile --dry-run --distro ubuntu-24.04 --arch amd64 --root $work/root"
# A manifest that does not validate would time the error path.
$dry "$work/m1000.yaml" >/dev/null

hyperfine -N --style basic --warmup 5 --runs $((RUNS * 5)) --export-json "$work/dryrun.json" \
	-n "hello-world" "$work/hello-bin" \
	-n "hello-world importing reconcile's packages" "$work/floor-bin" \
	-n "reconcile --version" "$work/reconcile --version" \
	-n "dry-run, 2 entries" "$dry $work/m2.yaml" \
	-n "dry-run, 1000 entries" "$dry $work/m1000.yaml" >&2

table=$work/dryrun.md
jq -r '
	(.results | map({key: .command, value: (.median * 1000)}) | from_entries) as $m
	| "| start-up and dry-run | median ms |",
	  "|---|---|",
	  (.results[] | "| \(.command) | \(.median * 1000 * 100 | round / 100) |"),
	  "",
	  "Start-up is \(($m["reconcile --version"] - $m["hello-world"]) * 100 | round / 100) ms over a Go hello-world (goal ≤ 3 ms: \(if $m["reconcile --version"] - $m["hello-world"] <= 3 then "met" else "not met" end)), of which \(($m["hello-world importing reconcile'"'"'s packages"] - $m["hello-world"]) * 100 | round / 100) ms is the initialisation of the packages it links, measured without any code of reconcile'"'"'s; a 1,000-entry dry-run is \($m["dry-run, 1000 entries"] / $m["dry-run, 2 entries"] * 100 | round / 100)× a 2-entry one (goal ≤ 4×) and \($m["dry-run, 1000 entries"] * 10 | round / 10) ms (goal ≤ 25 ms)."
' "$work/dryrun.json" >"$table"
cat "$table"
if [ -n "${BENCH_OUT:-}" ]; then
	cp "$table" "$BENCH_OUT/dryrun.md"
	cp "$work/dryrun.json" "$BENCH_OUT/dryrun.json"
fi
