#!/usr/bin/env bash
# Regenerates cmd/reconcile/default.pgo, the CPU profile `go build` uses for
# profile-guided optimisation of reconcile (inlining and layout of the hot
# decoding loops: xz about 6–13% faster, gzip a few %): one extraction of
# each package bench/pkgfile.sh builds (deb and rpm, gzip, xz and zstd),
# profiled and merged. Run it after a change to a decoder or the copy path,
# then bench/run.sh. Needs what bench/pkgfile.sh needs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_need go
bash "$repo/bench/pkgfile.sh" --build-only
cache=${PKGFILE_BENCH_CACHE:-${TMPDIR:-/tmp}/pkgfile-bench}/108M
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Profiled without the old profile, so that it describes the plain build.
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -pgo=off -o "$work/extract" ./bench/pkgfile/extract)
for pkg in "$cache"/kubelet_*.deb "$cache"/kubelet_*.rpm; do
	rm -rf "$work/out" && mkdir -p "$work/out"
	EXTRACT_CPUPROFILE="$work/$(basename "$pkg").pprof" "$work/extract" "$pkg" "$work/out" opt/bin/kubelet usr/bin/kubelet
done
go tool pprof -proto "$work"/*.pprof >"$repo/cmd/reconcile/default.pgo"
echo "wrote cmd/reconcile/default.pgo from $(ls "$work"/*.pprof | wc -l) profiles" >&2
