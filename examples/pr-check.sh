#!/usr/bin/env bash
# pr-check.sh MANIFEST... — the pull-request check of components manifests.
#
# For every manifest and every distro it names, and each architecture, plan a
# node boot of an empty image for every cluster version the manifest serves:
#   reconcile --dry-run --detailed-exitcode --mode=boot --k8s-version all \
#     --root EMPTY --distro D --arch A MANIFEST
# Exit 0 (no changes) and 5 (changes) are success; 2 means the manifest is
# invalid (the message names the field and line); any other code is the exit
# code a boot would fail with, for a served version that some tool has no
# entry for (205: no credential provider for that line). Every combination
# runs, so one run reports every failure.
#
# Environment:
#   RECONCILE  the reconcile binary (default: reconcile on PATH)
#   ARCHES     architectures to plan for (default: "amd64 arm64")
# In GitHub Actions each plan is a collapsible group and a failure an error
# annotation on the manifest.
set -euo pipefail

reconcile=${RECONCILE:-reconcile}
arches=${ARCHES:-amd64 arm64}

if (($# == 0)); then
	echo "usage: $0 MANIFEST..." >&2
	exit 2
fi
if ! command -v "$reconcile" >/dev/null 2>&1; then
	echo "pr-check: $reconcile: not found (set RECONCILE)" >&2
	exit 2
fi

# The plans are of an empty image, never of the machine running the check.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

group() { if [[ ${GITHUB_ACTIONS:-} == true ]]; then echo "::group::$*"; else echo "== $*"; fi; }
endgroup() { if [[ ${GITHUB_ACTIONS:-} == true ]]; then echo "::endgroup::"; fi; }
error() {
	local file=$1
	shift
	if [[ ${GITHUB_ACTIONS:-} == true ]]; then echo "::error file=$file::$*"; fi
	echo "pr-check: FAIL: $*" >&2
}

# distros prints the distinct distro: values of a manifest, block or flow
# style, comments stripped. Only the names are read here; whether they are
# valid is reconcile's to say.
distros() {
	sed -e 's/#.*//' "$1" |
		grep -oE "(^|[[:space:]{,-])distro:[[:space:]]*[\"']?[^\"'[:space:],}]+" |
		sed -E "s/.*distro:[[:space:]]*[\"']?//" |
		sort -u
}

failed=0
checked=0
for manifest in "$@"; do
	if [[ ! -r $manifest ]]; then
		error "$manifest" "$manifest: cannot read it"
		failed=$((failed + 1))
		continue
	fi
	mapfile -t names < <(distros "$manifest")
	if ((${#names[@]} == 0)); then
		# No distro to plan for: let reconcile say what is wrong with it.
		names=(ubuntu-24.04)
	fi
	invalid=false
	for distro in "${names[@]}"; do
		[[ $invalid == true ]] && break
		for arch in $arches; do
			group "$manifest: $distro $arch"
			code=0
			"$reconcile" --dry-run --detailed-exitcode --mode=boot --k8s-version all \
				--root "$root" --distro "$distro" --arch "$arch" "$manifest" || code=$?
			endgroup
			checked=$((checked + 1))
			case $code in
			0 | 5) ;;
			2)
				# Bad input: the manifest (or the distro name in it) is invalid;
				# the other plans of this manifest would say the same.
				error "$manifest" "$manifest: invalid for reconcile --distro $distro (exit 2, see above)"
				failed=$((failed + 1))
				invalid=true
				break
				;;
			*)
				error "$manifest" "$manifest: a boot on $distro $arch of a version it serves would exit $code (see the problem above)"
				failed=$((failed + 1))
				;;
			esac
		done
	done
done

if ((failed > 0)); then
	echo "pr-check: $failed of $checked plans failed" >&2
	exit 1
fi
echo "pr-check: all $checked plans computed: every served version boots"
