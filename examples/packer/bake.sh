#!/usr/bin/env bash
# bake.sh — the image-build step, as reconcile.pkr.hcl's shell provisioner runs
# it on the build VM (as root, after the pipeline's download step has put the
# packages in /opt/<tool>/downloads):
#   1. install the reconcile binary and the manifest into the image, where the
#      boot step (examples/boot/provision-kubelet.sh) finds them;
#   2. reconcile --mode=bake: extract every version this distro and arch needs
#      to /opt/bin/<tool>-<version>, from the cached packages and from the
#      tarballs and OCI artifacts the manifest pins (bake downloads those
#      itself, into the tool's cache dir, verified against the pin);
#   3. reconcile --mode=verify --exec: fail the build unless every binary is
#      what the manifest says and runs.
#
# Environment:
#   RECONCILE  the uploaded binary (default /tmp/reconcile)
#   MANIFEST   the uploaded manifest (default /tmp/components.yaml; empty: the
#              manifest embedded in the binary)
#   ROOT       the image's root (default /); tests point it at a directory
#   CA_FILE    PEM certificates of a private mirror, trusted for the artifact
#              downloads besides the system roots (optional)
#   DOCKER_CONFIG  the directory of the config.json with registry logins and
#              credential helpers for OCI artifacts (docker's own variable;
#              default ~/.docker; none: anonymous pulls)
set -euo pipefail

src_bin=${RECONCILE:-/tmp/reconcile}
src_manifest=${MANIFEST-/tmp/components.yaml}
root=${ROOT:-/}
prefix=${root%/}

bin=$prefix/usr/local/bin/reconcile
manifest=$prefix/etc/reconcile/components.yaml

install -D -m 0755 "$src_bin" "$bin"
args=(--root "$root")
if [[ -n $src_manifest ]]; then
	install -D -m 0644 "$src_manifest" "$manifest"
	args+=("$manifest")
fi
"$bin" --version

bake_args=("${args[@]}")
if [[ -n ${CA_FILE:-} ]]; then
	bake_args+=(--ca-file "$CA_FILE")
fi

echo "bake: reconcile --mode=bake ${bake_args[*]}"
"$bin" --mode=bake "${bake_args[@]}"

echo "bake: reconcile --mode=verify --exec ${args[*]}"
"$bin" --mode=verify --exec "${args[@]}"
