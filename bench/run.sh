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

## Extract one ~113 MB binary out of a package

The seed's step: `dpkg-deb -x` + `install`, and `rpm2cpio | cpio -idm --no-absolute-filenames` +
`install` (no fsync, no digest checked); reconcile's: `pkgfile.OpenIn` + `ExtractTo` (temp
file, fsync, rename, directory fsync, every check below). Payload: 108 MiB of real Go-binary
bytes (the toolchain's own binaries concatenated), packed by `dpkg-deb -Z{gzip,xz,zstd}` and
`rpmbuild` (`w9.gzdio`, `w6.xzdio`, `w3.zstdio`).

MD
	cat "$BENCH_OUT/pkgfile.md"
	cat <<'MD'

Goals (issue 14), each the ratio to the seed's step in the same run: ≤ 0.6× on zstd and gzip
debs and rpms, ≤ 0.9× on the xz deb, ≤ 1.0× on the xz rpm; peak RSS ≤ 32 MiB in every case,
on 2 cores and with `GOMAXPROCS=16`. Last run, on a 2-core VM shared with four other
engineers' builds (load average 4–7, so every wall time is noisy; read the ratio of one row,
not the absolute numbers):

- **Memory: met for one extraction, just missed for four at once.** 6–25 MiB per extraction, the same at `GOMAXPROCS=16`. Four extractions at
  once with `GOMAXPROCS=16` sharing two decoder slots (`Limits.Decoders`): 22–34 MiB, under the
  64 MiB bound of issue 12; the xz deb's 34 MiB is just over 32, and 29 MiB with a soft memory
  limit of 32 MiB (`GOMEMLIMIT`, or `debug.SetMemoryLimit` in main). What stays is the two
  slots' xz dictionaries (8 MiB each at dpkg's default preset), kept from package to package,
  and the copy buffers.
- **Time: met for zstd (deb 0.44×, rpm 0.35×), not met for gzip and xz**: gzip deb 1.03×,
  gzip rpm 0.80× (goal 0.6×), xz deb 1.44× (goal 0.9×), xz rpm 1.24× (goal 1.0×). A run
  minutes earlier under heavier load read 0.85/0.51 for zstd, 1.12/0.82 for gzip and
  1.07/1.22 for xz: the spread between runs is as large as some of the gaps. gzip is Go's
  single-threaded inflate (~140 MB/s here, slower than zlib, and not splittable without an
  index); xz is pure-Go LZMA2, 2–3× slower per core than liblzma, with two decoders on the
  multi-block deb and one on rpmbuild's single-block stream. No faster pure-Go xz decoder
  exists on the module proxy.

How the numbers were reached: SHA-256 of the result, the file write and any package digest
each run on a goroutine of their own, beside the decoder, over 256 KiB chunks; the zstd
decoder runs with concurrency 1; writeback of the temp file starts every 8 MiB
(`sync_file_range`), so the fsync before the rename waits 3–7 ms instead of 50–140 ms;
dpkg-deb's multi-block xz is decoded by two goroutines, out of order, straight into an
unlinked scratch file beside the target (the page cache holds the decoded blocks, not the
heap), read back in order, each block punched out once read.

Integrity checks each case relies on (every one verified; the payload is always read to its
end, the file fsynced before the rename):

| package | content verified by |
|---|---|
| deb, data.tar.gz | gzip CRC-32 of each member |
| deb, data.tar.xz | the xz stream's check (CRC-64 as dpkg-deb writes it; CRC-32 or SHA-256 when so declared) over every block, plus the index |
| deb, data.tar.zst | the zstd frame's XXH64 checksum (dpkg-deb sets the flag) |
| deb, data.tar.bz2 | bzip2 block and stream CRC-32 |
| deb, data.tar (none), data.tar.lzma, or zstd without the checksum flag, or xz with check "none" | `md5sums` from control.tar |
| rpm, any compression | the header's per-file digest (SHA-256) and the payload digest over the compressed bytes, and the compression's own check where it has one |

A deb's `md5sums` is not verified when the compression carries its own check: it is unsigned
and sits in the same archive, so it guards against the same accidental corruption that check
already catches, and `dpkg-deb -x` never reads it. `Entry.Checks` (recorded nowhere yet)
names what verified each extraction.
MD
} >"$repo/BENCHMARKS.md"
echo "wrote BENCHMARKS.md and bench/chart.svg" >&2
