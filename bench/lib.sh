# Shared by the bench scripts: sourced, not run.

# bench_payload SIZE_MIB FILE writes SIZE_MIB MiB of real Go-binary bytes
# (the toolchain's own binaries, concatenated) to FILE once: random bytes
# would compress like no kubelet does.
bench_payload() {
	local size_mib=$1 out=$2
	[ -s "$out" ] && return
	local tooldir goroot
	tooldir=$(go env GOTOOLDIR)
	goroot=$(go env GOROOT)
	# head closes the pipe once it has enough: cat's SIGPIPE is expected.
	(
		set +o pipefail
		for _ in 1 2 3 4 5 6; do cat "$tooldir"/* "$goroot"/bin/*; done | head -c $((size_mib << 20)) >"$out.tmp"
	)
	mv "$out.tmp" "$out"
	chmod 0755 "$out"
}

# bench_need TOOL... fails with the packages to install when a tool is missing.
bench_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || {
			echo "missing $t: apt-get install dpkg-dev rpm cpio hyperfine jq time gnuplot-nox" >&2
			exit 1
		}
	done
}
