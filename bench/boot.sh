#!/usr/bin/env bash
# Boot on a baked root (kubelet + kubectl, SIZE_MB each), compared in the same
# run with the seed's shell path (mv, chown, chmod, rm -rf per tool) and the
# package path (dpkg-deb -x of both packages). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-100}
RUNS=${RUNS:-15}
work=$(mktemp -d /var/tmp/reconcile-bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT

CGO_ENABLED=0 go build -trimpath -o "$work/reconcile" ./cmd/reconcile
bin=$work/reconcile
tpl=$work/template
mkdir -p "$tpl/etc"
printf 'ID=ubuntu\nVERSION_ID="24.04"\n' >"$tpl/etc/os-release"
cat >"$work/components.yaml" <<'YAML'
components:
  - {tool: kubelet, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
  - {tool: kubectl, distro: ubuntu-24.04, packageVersion: "1.35.7-ubuntu24.04u1", arches: [amd64]}
YAML
for tool in kubelet kubectl; do
	d=$work/build/$tool
	mkdir -p "$d/DEBIAN" "$d/usr/bin" "$tpl/opt/$tool/downloads"
	printf 'Package: %s\nVersion: 1.35.7-ubuntu24.04u1\nArchitecture: amd64\nMaintainer: bench <b@example.invalid>\nDescription: bench\n' "$tool" >"$d/DEBIAN/control"
	head -c "${SIZE_MB}M" /dev/urandom >"$d/usr/bin/$tool"
	chmod 0755 "$d/usr/bin/$tool"
	dpkg-deb --root-owner-group -Zzstd -z1 --build "$d" "$tpl/opt/$tool/downloads/${tool}_1.35.7-ubuntu24.04u1_amd64.deb" >/dev/null
done
"$bin" --mode=bake --root "$tpl" --arch amd64 "$work/components.yaml" >/dev/null
cp -a "$tpl/opt/kubelet/downloads/"*.deb "$tpl/opt/kubectl/downloads/"*.deb "$work/"

root=$work/root
reset="rm -rf $root && cp -a $tpl $root && sync"
cat >"$work/shell-boot.sh" <<'SH'
#!/usr/bin/env bash
# The seed's shell path, per tool.
set -e
root=$1
for tool in kubelet kubectl; do
	mv "$root/opt/bin/$tool-1.35.7" "$root/opt/bin/$tool"
	chown root:root "$root/opt/bin/$tool"
	chmod 0755 "$root/opt/bin/$tool"
	rm -rf "$root/opt/bin/$tool"-*
	rm -rf "$root/opt/$tool/downloads"
done
SH
chmod +x "$work/shell-boot.sh"

hyperfine --style basic --runs "$RUNS" --export-json "$work/boot.json" \
	--prepare "$reset" -n reconcile "$bin --mode=boot --k8s-version 1.35.7 --root $root --arch amd64 $work/components.yaml" \
	--prepare "$reset" -n shell "$work/shell-boot.sh $root" \
	--prepare "rm -rf $work/pkgroot && mkdir -p $work/pkgroot && sync" -n dpkg-deb \
	"dpkg-deb -x $work/kubelet_1.35.7-ubuntu24.04u1_amd64.deb $work/pkgroot && dpkg-deb -x $work/kubectl_1.35.7-ubuntu24.04u1_amd64.deb $work/pkgroot" >&2

python3 - "$work/boot.json" "$SIZE_MB" <<'PY'
import json, sys, statistics
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: statistics.median(v["times"]) * 1000 for k, v in r.items()}
print(f"| boot, kubelet + kubectl {sys.argv[2]} MB each | median ms | reconcile ÷ this |")
print("|---|---|---|")
for k in ("reconcile", "shell", "dpkg-deb"):
    print(f"| {k} | {med[k]:.1f} | {med['reconcile'] / med[k]:.3f}× |")
print()
print(f"reconcile is {med['shell'] / med['reconcile']:.2f}× the speed of the shell path and {med['dpkg-deb'] / med['reconcile']:.0f}× the speed of the package path.")
PY
