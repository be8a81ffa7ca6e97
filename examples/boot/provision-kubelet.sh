#!/usr/bin/env bash
# provision-kubelet.sh — the boot step of node provisioning: put the kubelet,
# kubectl and credential provider of the cluster's version in place, from the
# versioned binaries the image build baked, else the cached package, else the
# package manager. It replaces the shell functions that mv /opt/bin/kubelet-*
# into place and fall back to installing the package.
#
# Environment (as node provisioning already sets it):
#   KUBERNETES_VERSION               the cluster version, e.g. 1.35.7 (required)
#   SHOULD_ENFORCE_KUBE_PMC_INSTALL  true: install from the package, ignoring
#                                    the baked binaries (default false)
#   ROOT       the node's root (default /); tests point it at a directory
#   RECONCILE  default ROOT/usr/local/bin/reconcile (installed by bake.sh)
#   MANIFEST   default ROOT/etc/reconcile/components.yaml if present, else the
#              manifest embedded in the binary
#   LOG_FILE   reconcile's output is appended here too
#              (default ROOT/var/log/reconcile/boot.log)
#
# Exit codes are reconcile's, which node provisioning already knows:
#   0 ok, 121 kubelet, 122 kubectl, 205 credential provider, 2 bad input
#   (KUBERNETES_VERSION, manifest, os-release), 4 another run holds the lock,
#   3 the disk differs from the manifest after boot, 1 anything else.
set -uo pipefail

root=${ROOT:-/}
prefix=${root%/}
reconcile=${RECONCILE:-$prefix/usr/local/bin/reconcile}
manifest=${MANIFEST:-}
if [[ -z $manifest && -f $prefix/etc/reconcile/components.yaml ]]; then
	manifest=$prefix/etc/reconcile/components.yaml
fi
log_file=${LOG_FILE:-$prefix/var/log/reconcile/boot.log}

log() { printf '%s provision-kubelet: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$log_file" >&2; }

# meaning names an exit code for the log.
meaning() {
	case $1 in
	0) echo "ok" ;;
	1) echo "an action failed" ;;
	2) echo "bad input: KUBERNETES_VERSION, SHOULD_ENFORCE_KUBE_PMC_INSTALL, the manifest or os-release" ;;
	3) echo "the binaries in place differ from the manifest" ;;
	4) echo "another reconcile run held the lock" ;;
	121) echo "kubelet could not be put in place" ;;
	122) echo "kubectl could not be put in place" ;;
	205) echo "the ACR credential provider could not be put in place" ;;
	*) echo "unexpected exit code" ;;
	esac
}

# run runs reconcile with its output on stdout and appended to the log; it
# returns reconcile's exit code.
run() {
	log "reconcile $*"
	"$reconcile" "$@" 2>&1 | tee -a "$log_file"
	return "${PIPESTATUS[0]}"
}

mkdir -p "$(dirname "$log_file")" || exit 1
if [[ -z ${KUBERNETES_VERSION:-} ]]; then
	log "KUBERNETES_VERSION is not set"
	exit 2
fi
if [[ ! -x $reconcile ]]; then
	log "$reconcile: not found or not executable"
	exit 1
fi

args=(--root "$root")
[[ -n $manifest ]] && args+=("$manifest")

log "Kubernetes $KUBERNETES_VERSION, SHOULD_ENFORCE_KUBE_PMC_INSTALL=${SHOULD_ENFORCE_KUBE_PMC_INSTALL:-false}"
start=$SECONDS
run --mode=boot "${args[@]}"
code=$?
if ((code == 0)); then
	# What is in place now, and that it runs: each binary reports its version.
	run --mode=verify --targets --exec "${args[@]}"
	code=$?
fi
log "exit $code ($(meaning "$code")) after $((SECONDS - start))s"
exit "$code"
