#!/usr/bin/env bash
# Reproduces every benchmark in BENCHMARKS.md and rewrites it, with the chart
# bench/chart.svg: package extraction (bench/pkgfile.sh) and boot
# (bench/boot.sh), each against the tool a user would otherwise run, in the
# same run. RUNS=N sets the repetitions (default 10).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_need go hyperfine jq gnuplot
RUNS=${RUNS:-10}
export BENCH_OUT
BENCH_OUT=$(mktemp -d)
trap 'rm -rf "$BENCH_OUT"' EXIT

bash "$repo/bench/pkgfile.sh" --runs "$RUNS"
RUNS=$RUNS bash "$repo/bench/boot.sh"

# One row per comparison: label, reconcile's median ms, the other tool's.
data=$BENCH_OUT/chart.dat
for j in "$BENCH_OUT"/pkgfile-kubelet_*.json; do
	label=$(basename "$j" .json | sed 's/pkgfile-kubelet_//; s/\./ /')
	jq -r --arg l "$label" '"\"extract \($l)\" \(.results[0].median * 1000) \(.results[1].median * 1000)"' "$j"
done >"$data"
jq -r '(.results | map({key: .command, value: (.median * 1000)}) | from_entries) as $m
	| "\"boot, caches removed\" \($m["reconcile boot"]) \($m["shell mv + rm"])",
	  "\"boot vs dpkg-deb -x\" \($m["reconcile boot --keep-cache"]) \($m["dpkg-deb -x both"])"' \
	"$BENCH_OUT/boot.json" >>"$data"

gnuplot <<GP
set terminal svg size 900,420 dynamic font "sans,12" background rgb "white"
set output "$repo/bench/chart.svg"
set title "reconcile against the tool a user would otherwise run (median ms, log scale; lower is faster)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [1:*]
set ylabel "ms"
set xtics rotate by -25 scale 0
set key above
set grid ytics
plot "$data" using 2:xtic(1) title "reconcile (Go)" lc rgb "#2b6cb0", \
     "" using 3 title "shell / dpkg-deb / rpm2cpio | cpio" lc rgb "#c05621"
GP

go_version=$(go env GOVERSION)
{
	cat <<MD
# Benchmarks

Reproduce everything here with \`bench/run.sh\` (\`RUNS=N\`, default 10): it needs \`hyperfine\`,
\`jq\`, \`gnuplot\`, \`time\`, \`dpkg-dev\`, \`rpm\` and \`cpio\` from the distro, and rewrites this file
and [bench/chart.svg](bench/chart.svg). Last run: $(date -u +%Y-%m-%d), $(nproc) cores, $go_version,
\`CGO_ENABLED=0\`; medians of hyperfine runs, each contender in the same run as what it is
compared with. Speed and memory are measured here, never asserted in tests.

![reconcile against the shell and package tools](bench/chart.svg)

## Boot: put kubelet and kubectl in place on a baked root

The seed's shell path is a bash function doing \`mv\`, \`chown\`, \`chmod\`, \`rm -rf <tool>-*\` per
tool (and \`rm -rf\` of the package cache); the package path is \`dpkg-deb -x\` of both packages
(which still skips what \`apt-get install\` adds: the dpkg database and the post-install scripts).
Targets: reconcile ≤ 1.0× the time of the shell path, ≥ 100× faster than the package path.

MD
	cat "$BENCH_OUT/boot.md"
	cat <<'MD'

Most of a boot is deleting the two 100 MiB package caches (`unlink` of large files), which
both reconcile and the shell do; `--keep-cache` shows the rest: process start, reading the
manifest and the state record, two renames, and five fsyncs per tool (the record before and
after each rename, the directory) that the shell path skips, which is what makes a crash at
any point recoverable. Timings of 10–30 ms move by ±20% between runs on this shared 2-core VM
(reconcile ÷ shell has read 0.80–1.10× across runs): compare within one run.

## Extract one 100 MiB binary out of a package

MD
	cat "$BENCH_OUT/pkgfile.md"
	cat <<'MD'

Target: ≤ 0.7× the time of the shell tool, memory flat in the binary's size (≤ 32 MiB).
What the Go side does that the tools do not: it checks every digest the package carries (deb
`md5sums`; rpm header SHA-256, payload digest and per-file SHA-256), reads the payload to its
end (so a duplicate or truncation anywhere is caught), hashes the result with SHA-256 for the
state record, and fsyncs the file and its directory before the rename (~55 ms per 100 MiB).
Where the target is missed, that is why: gzip inflate in Go is slower than zlib and cannot be
split over cores; the pure-Go xz decoder is 2–3× slower per core than liblzma (dpkg-deb's
multi-block xz streams are decoded on all cores here, which is most of the gap closed; the
single-block xz streams rpmbuild writes stay sequential); md5 on debs costs ~200 ms of CPU per
100 MiB (on a second goroutine). The xz deb row's memory is one decoded block held ahead of
the writer per core, bounded by the block size, not the binary's.
MD
} >"$repo/BENCHMARKS.md"
echo "wrote BENCHMARKS.md and bench/chart.svg" >&2
