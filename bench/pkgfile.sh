#!/usr/bin/env bash
# Benchmarks internal/pkgfile against the seed's step on packages that hold a
# ~113 MB binary of real Go-binary bytes: `dpkg-deb -x` + `install`, and
# `rpm2cpio | cpio -idm --no-absolute-filenames` + `install`, in the same
# hyperfine run; peak RSS (/usr/bin/time -f %M) on the machine's cores and
# with GOMAXPROCS=16, alone and four extractions at once.
#
#   bench/pkgfile.sh [--runs N] [--size MiB] [--build-only]
#
# Packages are built once and cached in $PKGFILE_BENCH_CACHE (default
# $TMPDIR/pkgfile-bench): rpmbuild with xz takes about a minute.
# Results: $CACHE/results.md (and JSON next to it).
set -euo pipefail

runs=3
size_mib=108
build_only=
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--size) size_mib=$2; shift 2 ;;
	--build-only) build_only=1; shift ;;
	*) echo "usage: $0 [--runs N] [--size MiB] [--build-only]" >&2; exit 2 ;;
	esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${PKGFILE_BENCH_CACHE:-${TMPDIR:-/tmp}/pkgfile-bench}/${size_mib}M
mkdir -p "$cache"
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_need dpkg-deb rpmbuild rpm2cpio cpio hyperfine jq /usr/bin/time

# The Go side, built the way reconcile is: static, with reconcile's
# profile for profile-guided optimisation (bench/pgo.sh).
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -pgo=cmd/reconcile/default.pgo -o "$cache/extract" ./bench/pkgfile/extract)

payload=$cache/kubelet
bench_payload "$size_mib" "$payload"

build_deb() { # comp
	local out=$cache/kubelet_$1.deb
	[ -s "$out" ] && return
	local root=$cache/debroot
	rm -rf "$root"
	mkdir -p "$root/DEBIAN" "$root/usr/bin"
	cp "$payload" "$root/usr/bin/kubelet"
	chmod 0755 "$root/usr/bin/kubelet"
	printf 'Package: kubelet\nVersion: 1.34.10-1.1\nArchitecture: amd64\nMaintainer: b <b@example.com>\nDescription: bench\n' >"$root/DEBIAN/control"
	(cd "$root" && md5sum usr/bin/kubelet >DEBIAN/md5sums)
	dpkg-deb --root-owner-group -Z"$1" --build "$root" "$out.tmp" >/dev/null
	mv "$out.tmp" "$out"
}

build_rpm() { # comp payload-macro
	local out=$cache/kubelet_$1.rpm
	[ -s "$out" ] && return
	local top=$cache/rpmtop-$1
	rm -rf "$top"
	mkdir -p "$top"
	cat >"$top/k.spec" <<SPEC
Name: kubelet
Version: 1.34.10
Release: 1.azl3
Summary: bench
License: MIT
%description
bench
%install
mkdir -p %{buildroot}/usr/bin
install -m 0755 $payload %{buildroot}/usr/bin/kubelet
%files
/usr/bin/kubelet
SPEC
	bench_rpmbuild "$top" "$top/k.spec" "$2"
	mv "$top"/RPMS/x86_64/*.rpm "$out"
	rm -rf "$top"
}

for c in gzip xz zstd; do build_deb "$c"; done
build_rpm gzip w9.gzdio
build_rpm xz w6.xzdio
build_rpm zstd w3.zstdio
[ -n "$build_only" ] && exit 0

out=$cache/out
results=$cache/results.md
{
	echo "$(date -u +%FT%TZ), $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg), $runs runs, median wall time; CPU = user+sys mean"
	echo
	echo "| package | size | Go OpenIn + ExtractTo (ms) | tool + install (ms) | ratio | goal | tool's decoding alone (ms) | Go CPU (ms) | tool CPU (ms) | Go peak RSS (MiB) | Go, GOMAXPROCS=16 | tool peak RSS (MiB) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$results"

rss_mib() { # command... → peak RSS of the whole pipeline's largest process, MiB
	/usr/bin/time -f %M -o "$cache/rss" "$@" >/dev/null 2>&1
	echo $(($(cat "$cache/rss") / 1024))
}

fresh() { rm -rf "$out" && mkdir -p "$out/x"; }

for pkg in "$cache"/kubelet_*.deb "$cache"/kubelet_*.rpm; do
	name=$(basename "$pkg")
	go_cmd="$cache/extract $pkg $out opt/bin/kubelet usr/bin/kubelet"
	# The seed's step: unpack into a scratch directory, install the binary.
	inst="install -D -m 0755 $out/x/usr/bin/kubelet $out/opt/bin/kubelet"
	# The tool decoding the payload to /dev/null, nothing written: the
	# floor of its own step, and what a goal below it asks to beat.
	case "$name" in
	*.deb)
		tool_cmd="sh -c 'dpkg-deb -x $pkg $out/x && $inst'"
		dec_cmd="sh -c 'dpkg-deb --fsys-tarfile $pkg >/dev/null'"
		;;
	*.rpm)
		tool_cmd="sh -c 'cd $out/x && rpm2cpio $pkg | cpio -idm --quiet --no-absolute-filenames && $inst'"
		dec_cmd="sh -c 'rpm2cpio $pkg >/dev/null'"
		;;
	esac
	hyperfine --style basic --warmup 1 --runs "$runs" \
		--prepare "rm -rf $out && mkdir -p $out/x" \
		--export-json "$cache/$name.json" \
		-n go "$go_cmd" -n tool "$tool_cmd" -n decode "$dec_cmd" >&2
	go_ms=$(jq '.results[0].median * 1000 | round' "$cache/$name.json")
	tool_ms=$(jq '.results[1].median * 1000 | round' "$cache/$name.json")
	dec_ms=$(jq '.results[2].median * 1000 | round' "$cache/$name.json")
	fresh
	go_rss=$(rss_mib $go_cmd)
	fresh
	go_rss16=$(GOMAXPROCS=16 rss_mib $go_cmd)
	fresh
	case "$name" in
	*.deb) tool_rss=$(rss_mib dpkg-deb -x "$pkg" "$out/x") ;;
	# cpio and rpm2cpio run at once; time reports one process, so measure
	# each side of the pipe.
	*.rpm) tool_rss="$(rss_mib rpm2cpio "$pkg") + $(cd "$out/x" && rpm2cpio "$pkg" | /usr/bin/time -f %M -o "$cache/rss" cpio -idm --quiet --no-absolute-filenames && echo $(($(cat "$cache/rss") / 1024)))" ;;
	esac
	go_cpu=$(jq '(.results[0].user + .results[0].system) * 1000 | round' "$cache/$name.json")
	tool_cpu=$(jq '(.results[1].user + .results[1].system) * 1000 | round' "$cache/$name.json")
	ratio=$(jq -n "$go_ms / $tool_ms * 100 | round / 100")
	# The goals of issue 14: xz is where dpkg-deb's liblzma decodes on all
	# cores (deb) or rpm's one block is sequential for everyone (rpm).
	case "$name" in
	*xz.deb) goal=0.9 ;;
	*xz.rpm) goal=1.0 ;;
	*) goal=0.6 ;;
	esac
	verdict=$(jq -nr "if $ratio <= $goal and $go_rss <= 32 and $go_rss16 <= 32 then \"≤ $goal ✓\" else \"≤ $goal ✗\" end")
	printf '| %s | %s MB | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(($(stat -c %s "$pkg") / 1000000))" "$go_ms" "$tool_ms" "$ratio" "$verdict" "$dec_ms" "$go_cpu" "$tool_cpu" "$go_rss" "$go_rss16" "$tool_rss" >>"$results"
done

# Four extractions at once with GOMAXPROCS=16, as a bake with --parallel 4
# on a big machine: peak RSS of the process, and with a soft memory limit.
{
	echo
	echo "Four extractions of the same package at once (EXTRACT_PARALLEL=4: two shared decoder slots), GOMAXPROCS=16: peak RSS of the process."
	echo
	echo "| package | peak RSS (MiB) | with GOMEMLIMIT=32MiB (MiB) |"
	echo "|---|---|---|"
} >>"$results"
for name in kubelet_xz.deb kubelet_zstd.deb kubelet_xz.rpm kubelet_gzip.deb; do
	go_cmd="$cache/extract $cache/$name $out opt/bin/kubelet usr/bin/kubelet"
	fresh
	par=$(EXTRACT_PARALLEL=4 GOMAXPROCS=16 rss_mib $go_cmd)
	fresh
	parlim=$(EXTRACT_PARALLEL=4 GOMAXPROCS=16 GOMEMLIMIT=32MiB rss_mib $go_cmd)
	printf '| %s | %s | %s |\n' "$name" "$par" "$parlim" >>"$results"
done
rm -rf "$out"
cat "$results"
# bench/run.sh collects the table and the raw timings from here.
if [ -n "${BENCH_OUT:-}" ]; then
	cp "$results" "$BENCH_OUT/pkgfile.md"
	for j in "$cache"/kubelet_*.json; do cp "$j" "$BENCH_OUT/pkgfile-$(basename "$j")"; done
fi
