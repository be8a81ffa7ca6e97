#!/usr/bin/env bash
# Boot on a baked root (kubelet + kubectl, SIZE_MB MiB each of real Go-binary
# bytes), compared in the same run with the seed's shell path (mv, chown,
# chmod, rm -rf per tool) and the package path (dpkg-deb -x of both
# packages, dpkg-deb's default xz). Both boot variants are timed: with the
# package caches removed (what boot does) and kept (--keep-cache; the shell
# twin skips its rm of the cache), since deleting 2 × 100 MB is most of the
# time. Prints a markdown table; with BENCH_OUT set, leaves it and the
# hyperfine JSON there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_need dpkg-deb hyperfine jq
SIZE_MB=${SIZE_MB:-100}
RUNS=${RUNS:-15}
COMP=${COMP:-xz}
cache=${BENCH_CACHE:-${TMPDIR:-/tmp}/reconcile-bench}/boot-${SIZE_MB}M-$COMP
work=$(mktemp -d /var/tmp/reconcile-bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$work/reconcile" ./cmd/reconcile)
bin=$work/reconcile
bench_payload "$SIZE_MB" "$cache/payload"
cat >"$work/components.yaml" <<'YAML'
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
YAML
for tool in kubelet kubectl; do
	deb=$cache/${tool}_1.35.7-ubuntu24.04u1_amd64.deb
	[ -s "$deb" ] && continue
	d=$work/build/$tool
	mkdir -p "$d/DEBIAN" "$d/usr/bin"
	printf 'Package: %s\nVersion: 1.35.7-ubuntu24.04u1\nArchitecture: amd64\nMaintainer: bench <b@example.invalid>\nDescription: bench\n' "$tool" >"$d/DEBIAN/control"
	cp "$cache/payload" "$d/usr/bin/$tool"
	dpkg-deb --root-owner-group -Z"$COMP" --build "$d" "$deb.tmp" >/dev/null
	mv "$deb.tmp" "$deb"
done

tpl=$work/template
mkdir -p "$tpl/etc" "$tpl/opt/kubelet/downloads" "$tpl/opt/kubectl/downloads"
printf 'ID=ubuntu\nVERSION_ID="24.04"\n' >"$tpl/etc/os-release"
cp "$cache"/kubelet_*.deb "$tpl/opt/kubelet/downloads/"
cp "$cache"/kubectl_*.deb "$tpl/opt/kubectl/downloads/"
"$bin" --mode=bake --root "$tpl" --arch amd64 "$work/components.yaml" >/dev/null

root=$work/root
reset="rm -rf $root && cp -a $tpl $root && sync"
cat >"$work/shell-boot.sh" <<'SH'
#!/usr/bin/env bash
# The seed's shell path, per tool; KEEP_CACHE=1 skips removing the cache.
set -e
root=$1
for tool in kubelet kubectl; do
	mv "$root/opt/bin/$tool-1.35.7" "$root/opt/bin/$tool"
	chown root:root "$root/opt/bin/$tool"
	chmod 0755 "$root/opt/bin/$tool"
	rm -rf "$root/opt/bin/$tool"-*
	[ -n "${KEEP_CACHE:-}" ] || rm -rf "$root/opt/$tool/downloads"
done
SH
chmod +x "$work/shell-boot.sh"
boot="$bin --mode=boot --k8s-version 1.35.7 --root $root --arch amd64 $work/components.yaml"

hyperfine --style basic --runs "$RUNS" --export-json "$work/boot.json" \
	--prepare "$reset" -n "reconcile boot" "$boot" \
	--prepare "$reset" -n "shell mv + rm" "$work/shell-boot.sh $root" \
	--prepare "$reset" -n "reconcile boot --keep-cache" "$boot --keep-cache" \
	--prepare "$reset" -n "shell mv, cache kept" "KEEP_CACHE=1 $work/shell-boot.sh $root" \
	--prepare "rm -rf $work/pkgroot && mkdir -p $work/pkgroot && sync" -n "dpkg-deb -x both" \
	"dpkg-deb -x $cache/kubelet_1.35.7-ubuntu24.04u1_amd64.deb $work/pkgroot && dpkg-deb -x $cache/kubectl_1.35.7-ubuntu24.04u1_amd64.deb $work/pkgroot" >&2

table=$work/boot.md
jq -r --arg size "$SIZE_MB" --arg comp "$COMP" '
	(.results | map({key: .command, value: (.median * 1000)}) | from_entries) as $m
	| "| boot, kubelet + kubectl \($size) MiB each (\($comp) debs) | median ms | reconcile ÷ this |",
	  "|---|---|---|",
	  (.results[] | "| \(.command) | \(.median * 1000 * 10 | round / 10) | \(
		if (.command | test("keep-cache|kept")) then $m["reconcile boot --keep-cache"] else $m["reconcile boot"] end
		/ (.median * 1000) * 1000 | round / 1000)× |"),
	  "",
	  "Boot with the caches removed takes \($m["reconcile boot"] / $m["shell mv + rm"] * 100 | round / 100)× the time of the shell path (goal ≤ 0.7×: \(if $m["reconcile boot"] / $m["shell mv + rm"] <= 0.7 then "met" else "not met" end)); with the caches kept, \($m["reconcile boot --keep-cache"] / $m["shell mv, cache kept"] * 100 | round / 100)× the shell path, and \($m["dpkg-deb -x both"] / $m["reconcile boot --keep-cache"] | round)× faster than the package path (dpkg-deb -x alone: no dpkg database, no scripts)."
' "$work/boot.json" >"$table"
cat "$table"
if [ -n "${BENCH_OUT:-}" ]; then
	cp "$table" "$BENCH_OUT/boot.md"
	cp "$work/boot.json" "$BENCH_OUT/boot.json"
fi
