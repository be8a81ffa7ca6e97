package cli

import (
	"runtime/debug"
)

const helpText = `NAME
    reconcile - keep a node image's Kubernetes binaries as a components manifest declares

SYNOPSIS
    reconcile --mode=bake   [flags] [MANIFEST]   image build: extract every version this distro/arch needs
    reconcile --mode=boot   [flags] [MANIFEST]   node boot: put the requested version in place
    reconcile --mode=verify [flags] [MANIFEST]   image test: is the disk what the manifest says?
    reconcile --dry-run     [flags] [MANIFEST]   print the plan (bake unless --mode), change nothing

    MANIFEST defaults to the manifest embedded in the binary (manifests/components.yaml);
    - reads it from standard input.

FLAGS
    --root DIR                  every path is under DIR (default /)
    --distro ID-VERSION         ubuntu-24.04, azurelinux-3.0, ... (default: DIR/etc/os-release)
    --arch amd64|arm64          (default: this machine's)
    --k8s-version V             boot, verify: cluster version (env KUBERNETES_VERSION)
    --enforce-package-install   boot: take the package path, not the versioned binary
                                (env SHOULD_ENFORCE_KUBE_PMC_INSTALL=true)
    --keep-cache                boot: keep /opt/<tool>/downloads
    --require-deps              boot: fail (tool's code) when the node lacks a dependency
                                of the package (default: a warning in the plan and events)
    --offline                   bake, boot: fetch or download nothing; a package or artifact
                                not in its cache is a problem naming the entry and the cache
                                (bake exit 1, boot the tool's code), and nothing is written
    --require-manifest-version  boot: refuse a cluster version no entry serves (tool's code)
                                instead of serving it by the package rules below (also the
                                manifest's requireManifestVersion: true)
    --verify-digest             compare full sha256 digests instead of size and mtime
    --targets                   verify: check the boot targets for --k8s-version (or
                                KUBERNETES_VERSION) instead of the versioned binaries; an
                                explicit --k8s-version implies it
    --exec                      verify: also run each binary's version command (see VERIFY)
    --output text|json          (default text; json is one document on stdout)
    --detailed-exitcode         dry-run: exit 5 when the plan has changes
    --lock-timeout D            wait this long for another run's lock (default 5m)
    --parallel N                concurrent extractions and fetches at bake (default: CPU
                                count; the package manager runs one download at a time)
    --pm-arg ARG                bake, boot: extra argument for apt-get or dnf, repeatable
                                (e.g. --pm-arg=-o --pm-arg=Acquire::Retries=5)
    --events-dir DIR            bake, boot: write one provisioning event (JSON) per action and
                                one for the run into DIR (under --root), as <epoch-ms>.json
    --ca-file FILE              PEM certificates trusted for artifact downloads besides the
                                system roots (a private mirror's CA)
    --download-timeout D        bound on each artifact download, retries included (default 30m)
    --download-stall-timeout D  fail a download request when no byte arrives for D (default 30s)
    --download-attempts N       tries of each download request, with doubling waits (default 4)
                                (registry logins: $DOCKER_CONFIG/config.json or ~/.docker/config.json)
    --verbose                   log every action to stderr
    --version                   print the build's version and commit

EXIT CODES
    0    success (dry-run: the plan was printed)
    1    an action failed, or the plan has a problem (bake: a package that is not to be had)
    2    bad input: manifest, flags, environment, os-release, cluster version; nothing changed
    3    verify: the disk differs from the manifest
    4    another run held the lock for the whole --lock-timeout
    5    dry-run --detailed-exitcode: the plan has changes (a plan with problems exits
         the code the run would: 1 at bake, the tool's code at boot)
    6    interrupted by SIGTERM or SIGINT: temp files removed, every target whole
    121  boot: kubelet could not be put in place
    122  boot: kubectl could not be put in place
    205  boot: the ACR credential provider could not be put in place
    A tool's boot code is its manifest exitCode (7-255; 1 when it has none). A boot failure
    that is no one tool's (the lock, a disk it cannot read or write) exits with the code of
    the manifest's first tool for the distro.

FILES (under --root)
    /opt/<tool>/downloads/*.deb|*.rpm   cached packages, matched by their own metadata
    /opt/<tool>/downloads/sha256-*      cached tarballs and OCI artifacts, named by their pin
    /opt/bin/<tool>-<version>           versioned binaries (bake), mode 0755
    /opt/bin/<tool>                     boot target (credential provider:
                                        /var/lib/kubelet/credential-provider/acr-credential-provider)
    /var/lib/reconcile/state.json       what bake produced: size, mtime, sha256, source package
    /var/lib/reconcile/lock             serialises runs

BOOT DECISION ORDER, PER TOOL
    1. --enforce-package-install: skip to 3
    2. /opt/bin/<tool>-<version> matches the state record: rename it onto the target
    3. a cached package of exactly that version and arch: extract the binary to the target
    4. else fetch that exact package with apt-get, dnf or tdnf (download only, the root's
       own repositories), then 3; --offline: fail instead
    5. else fail with the tool's exit code
    A cluster version no entry serves, for a tool whose entries name exact versions
    (kubelet, kubectl), is served in the same order with the package's upstream version
    = the cluster version: 2. a versioned binary the record attributes to it, 3. the
    newest cached revision of it for the node's arch, 4. the newest revision of it for the
    node's arch in the repository (1.34.1 never takes 1.34.10; amd64 never an arm64-only
    revision); the plan and the events carry a manifest_version_missing warning.
    --require-manifest-version makes it a failure with the tool's exit code, as for a
    tool whose entries are minor lines or constraints (credential provider, runc).
    Then the other versioned binaries and the package cache are removed.
    Bake: an entry's package not in its cache is fetched the same way (--offline: exit 1).

VERIFY
    Without --targets, verify checks /opt/bin/<tool>-<version> (the baked image) and ignores
    KUBERNETES_VERSION; its first line says which it checked. Each binary must be a regular
    file, mode 0755, named by the state record as the entry's tool, package, version and
    arch, of the recorded size and sha256, and an ELF file whose machine is the entry's arch
    (x86-64 for amd64, AArch64 for arm64). With --exec its version command (versionArgs,
    default --version) must print the entry's upstream version; it runs with an empty
    environment, stdin from /dev/null, in its own process group killed after 10s, and with
    --root other than / only as root inside the root (chroot); a binary of another arch is
    not run. Bake never runs anything from a package: it reads the version from the
    binary's Go build info or read-only data.

EXAMPLES
    reconcile --dry-run --distro ubuntu-24.04
    reconcile --mode=bake --root /mnt/image manifests/components.yaml &&
        reconcile --mode=verify --root /mnt/image manifests/components.yaml
    KUBERNETES_VERSION=1.35.7 reconcile --mode=boot
    reconcile --mode=verify --targets --k8s-version 1.35.7
`

// buildVersion is the module version and VCS commit the binary was built from.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "reconcile (unknown build)"
	}
	v := "reconcile " + info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " commit " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v + " " + info.GoVersion
}
