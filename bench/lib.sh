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

# bench_rpmbuild TOPDIR SPEC PAYLOAD builds SPEC's binary rpm under TOPDIR
# with the payload compression PAYLOAD (w9.gzdio, w6.xzdio, w3.zstdio), as
# is: no stripping, no build-id links, no debug package.
bench_rpmbuild() {
	rpmbuild -bb --quiet --target x86_64 \
		--define "_topdir $1" --define "_binary_payload $3" \
		--define "_tmppath $1" --define "_dbpath $1/rpmdb" \
		--define '__strip /bin/true' --define '_build_id_links none' \
		--define 'debug_package %{nil}' --define '__os_install_post %{nil}' \
		"$2" >/dev/null
}
