package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/pkgbuild"
	"github.com/nodeimage/reconcile/internal/platform"
)

// planDoc is what the fetch tests read of a JSON plan.
type planDoc struct {
	Actions []struct {
		Op             string `json:"op"`
		Tool           string `json:"tool"`
		PackageVersion string `json:"package_version"`
		NewestOf       string `json:"newest_revision_of"`
		Path           string `json:"path"`
	} `json:"actions"`
	Report []struct {
		Kind, Code, Tool string
	} `json:"report"`
}

func jsonPlan(t testing.TB, args ...string) planDoc {
	t.Helper()
	r := run(t, nil, append([]string{"--dry-run", "--output", "json"}, args...)...).must(t, ExitOK)
	var p planDoc
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.stdout)
	}
	return p
}

// fetches lists "tool version" of the plan's fetches ("tool newest of V"
// for a newest revision).
func (p planDoc) fetches() []string {
	var out []string
	for _, a := range p.Actions {
		switch {
		case a.Op != "fetch":
		case a.NewestOf != "":
			out = append(out, a.Tool+" newest of "+a.NewestOf)
		default:
			out = append(out, a.Tool+" "+a.PackageVersion)
		}
	}
	return out
}

// rootRepo is a real local repository of a format, placed in a test
// root's own package manager configuration, as an image's sources are.
type rootRepo struct {
	format  platform.Format
	distro  string
	suffix  string // of every fixture revision
	tools   []string
	host    []string // the host's package manager state
	setting string   // the manifest's distros entry restricting fetches to it
	// place makes the repository in dir holding pkgs, named by root.
	place func(t *testing.T, dir, root string, pkgs []string)
}

var rootRepos = []rootRepo{{
	format: platform.Deb, distro: "ubuntu-24.04", suffix: "ubuntu24.04u1",
	tools: []string{"apt-get", "apt-cache", "dpkg-scanpackages"}, host: pkgbuild.AptHostPaths(),
	setting: "{aptSources: [/etc/apt/sources.list.d/local.list]}",
	place: func(t *testing.T, dir, root string, pkgs []string) {
		if _, err := pkgbuild.AptRootRepo(dir, root, "local.list", pkgs...); err != nil {
			t.Fatal(err)
		}
	},
}, {
	format: platform.RPM, distro: "azurelinux-3.0", suffix: "azl3",
	tools: []string{"dnf", "createrepo_c"}, host: pkgbuild.DnfHostPaths(),
	setting: "{dnfRepos: [local]}",
	place: func(t *testing.T, dir, root string, pkgs []string) {
		if err := pkgbuild.DnfRootRepo(dir, root, "local", pkgs...); err != nil {
			t.Fatal(err)
		}
	},
}}

// rev is a package version of upstream at revision n ("1.34.1-2ubuntu24.04u1"
// reads badly, so the suffix goes after a dot: 1.34.1-2.azl3).
func (rr rootRepo) rev(upstream, n string) string { return upstream + "-" + n + "." + rr.suffix }

// newRoot makes a root of the repository's distro whose package manager
// configuration names a repository of pkgs, and returns the root and the
// repository's directory.
func (rr rootRepo) newRoot(t *testing.T, pkgs ...string) (root, repo string) {
	t.Helper()
	pkgbuild.Require(t, rr.tools...)
	root = newRoot(t, rr.distro)
	repo = filepath.Join(t.TempDir(), "repo")
	rr.place(t, repo, root, pkgs)
	return root, repo
}

func (rr rootRepo) manifest(t *testing.T, versions ...string) string {
	t.Helper()
	text := "distros:\n  " + rr.distro + ": " + rr.setting + "\ncomponents:\n"
	for _, v := range versions {
		for _, tool := range []string{"kubelet", "kubectl"} {
			text += "  - {tool: " + tool + ", distro: " + rr.distro + `, packageVersion: "` + v + "\"}\n"
		}
	}
	p := writeManifest(t, text)
	return p
}

// TestBakeFetchesFromTheRootsRepository bakes with an empty cache: exactly
// the manifest's versions are fetched from the root's own repository
// (beside other revisions, versions and arches) and extracted, the host's
// package manager state is untouched, and a second bake fetches nothing.
func TestBakeFetchesFromTheRootsRepository(t *testing.T) {
	for _, rr := range rootRepos {
		t.Run(string(rr.format), func(t *testing.T) {
			pkgbuild.RequireFormat(t, rr.format)
			host := pkgbuild.Snapshot(rr.host...)
			want := []string{rr.rev("1.34.10", "1"), rr.rev("1.35.7", "2")}
			var pkgs []string
			for _, tool := range []string{"kubelet", "kubectl"} {
				for _, v := range append([]string{rr.rev("1.34.1", "1"), rr.rev("1.35.7", "3")}, want...) {
					pkgs = append(pkgs, pkg(t, rr.format, tool, v, platform.AMD64), pkg(t, rr.format, tool, v, platform.ARM64))
				}
			}
			root, repo := rr.newRoot(t, pkgs...)
			manifest := rr.manifest(t, want...)
			args := []string{"--mode=bake", "--root", root, "--arch", "amd64", manifest}

			got := jsonPlan(t, args...).fetches()
			wantFetches := []string{"kubelet " + want[0], "kubectl " + want[0], "kubelet " + want[1], "kubectl " + want[1]}
			if !slices.Equal(got, wantFetches) {
				t.Fatalf("bake plans fetches %q, want %q", got, wantFetches)
			}
			r := run(t, nil, args...).must(t, ExitOK)
			if !strings.Contains(r.stdout, "+ fetch kubelet="+want[0]+" (amd64) with ") {
				t.Errorf("bake output:\n%s", r.stdout)
			}
			rec := loadRec(t, root)
			for _, v := range want {
				upstream := v[:strings.IndexByte(v, '-')]
				for _, tool := range []string{"kubelet", "kubectl"} {
					bin := filepath.Join(root, "opt/bin", tool+"-"+upstream)
					if out := runBinary(t, bin); out != "Kubernetes v"+upstream+"\n" {
						t.Errorf("%s reports %q", bin, out)
					}
					if m := elfMachine(t, bin); m != "EM_X86_64" {
						t.Errorf("%s is %s", bin, m)
					}
					if src := rec.Files["/opt/bin/"+tool+"-"+upstream].Source; src.Version != v || !strings.HasPrefix(src.File, "/opt/"+tool+"/downloads/") {
						t.Errorf("record: %s from %+v, want %s out of its cache", bin, src, v)
					}
				}
			}
			for _, tool := range []string{"kubelet", "kubectl"} {
				if entries, _ := os.ReadDir(filepath.Join(root, "opt", tool, "downloads")); len(entries) != 2 {
					t.Errorf("the %s cache holds %d files, want the 2 fetched", tool, len(entries))
				}
			}
			run(t, nil, "--mode=verify", "--exec", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)

			// Again: nothing to fetch, and the repository is not read (it
			// is gone).
			before := snapshot(t, repo)
			if got := planOps(t, args...); len(got) != 0 {
				t.Fatalf("a second bake plans %q", got)
			}
			if after := snapshot(t, repo); !slices.Equal(before, after) {
				t.Errorf("planning changed the repository:\n%v\n%v", before, after)
			}
			if err := os.RemoveAll(repo); err != nil {
				t.Fatal(err)
			}
			if r := run(t, nil, args...).must(t, ExitOK); !strings.Contains(r.stdout, "No changes") {
				t.Errorf("second bake:\n%s", r.stdout)
			}
			host.Unchanged(t)
		})
	}
}

// TestBakeOfflineWritesNothing: with --offline and an empty cache, bake
// fetches nothing from the repository it has, names every entry and its
// cache, exits 1 and writes nothing but the lock every run takes.
func TestBakeOfflineWritesNothing(t *testing.T) {
	rr := rootRepos[0]
	pkgbuild.RequireFormat(t, rr.format)
	v := rr.rev("1.34.10", "1")
	root, _ := rr.newRoot(t, pkg(t, rr.format, "kubelet", v, platform.AMD64), pkg(t, rr.format, "kubectl", v, platform.AMD64))
	manifest := rr.manifest(t, v)
	args := []string{"--mode=bake", "--offline", "--root", root, "--arch", "amd64", manifest}
	before := snapshot(t, root)[1:] // without "."
	r := run(t, nil, args...).must(t, ExitFailure)
	for _, tool := range []string{"kubelet", "kubectl"} {
		want := "no package " + tool + "=" + v + " (amd64) in /opt/" + tool + "/downloads, and --offline forbids fetching it"
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	var after []string
	for _, p := range snapshot(t, root) {
		// The lock is taken before observing, by every run but --dry-run
		// (its directories change the root's mtime).
		if !slices.Contains([]string{".", "var", "var/lib", "var/lib/reconcile", "var/lib/reconcile/lock"}, strings.Fields(p)[0]) {
			after = append(after, p)
		}
	}
	if !slices.Equal(before, after) {
		t.Errorf("an offline bake that failed changed the root:\n%v\n%v", before, after)
	}
	run(t, nil, "--dry-run", "--detailed-exitcode", "--offline", "--root", root, "--arch", "amd64", manifest).must(t, ExitFailure)
	if got := jsonPlan(t, args[1:]...).fetches(); len(got) != 0 {
		t.Errorf("an offline plan fetches %q", got)
	}
}

// unlistedRepo offers kubelet and kubectl 1.34.1 in revisions 1 and 2 for
// both arches and 3 for arm64 only, beside 1.34.10 and 1.34.11.
func unlistedRepo(t *testing.T, rr rootRepo) []string {
	var pkgs []string
	for _, tool := range []string{"kubelet", "kubectl"} {
		for _, v := range []string{rr.rev("1.34.1", "1"), rr.rev("1.34.1", "2"), rr.rev("1.34.10", "1"), rr.rev("1.34.11", "1")} {
			pkgs = append(pkgs, pkg(t, rr.format, tool, v, platform.AMD64), pkg(t, rr.format, tool, v, platform.ARM64))
		}
		pkgs = append(pkgs, pkg(t, rr.format, tool, rr.rev("1.34.1", "3"), platform.ARM64))
	}
	return pkgs
}

// TestBootUnlistedVersionFetchesTheNewestRevision boots for 1.34.1, which no
// entry names: amd64 gets 1.34.1-2 (not the arm64-only 1.34.1-3, not
// 1.34.10 or 1.34.11), arm64 gets 1.34.1-3; the plan and the events say the
// version was not in the manifest; --require-manifest-version refuses it.
func TestBootUnlistedVersionFetchesTheNewestRevision(t *testing.T) {
	for _, rr := range rootRepos {
		t.Run(string(rr.format), func(t *testing.T) {
			pkgbuild.RequireFormat(t, rr.format)
			host := pkgbuild.Snapshot(rr.host...)
			pkgs := unlistedRepo(t, rr)
			manifest := rr.manifest(t, rr.rev("1.34.10", "1"))
			for _, tc := range []struct {
				arch    platform.Arch
				want    string
				machine string
			}{{platform.AMD64, rr.rev("1.34.1", "2"), "EM_X86_64"}, {platform.ARM64, rr.rev("1.34.1", "3"), "EM_AARCH64"}} {
				t.Run(string(tc.arch), func(t *testing.T) {
					root, _ := rr.newRoot(t, pkgs...)
					args := []string{"--mode=boot", "--k8s-version", "1.34.1", "--root", root, "--arch", string(tc.arch), manifest}

					before := snapshot(t, root)
					r := run(t, nil, append([]string{"--require-manifest-version"}, args...)...).must(t, 121)
					if !strings.Contains(r.stderr, "no kubelet entry for "+rr.distro+" "+string(tc.arch)+" serves Kubernetes 1.34.1") {
						t.Errorf("strict boot stderr:\n%s", r.stderr)
					}
					if exists(filepath.Join(root, "opt")) || len(snapshot(t, root)) != len(before)+4 {
						t.Errorf("a refused boot wrote more than the lock:\n%v", snapshot(t, root))
					}

					p := jsonPlan(t, args...)
					if got, want := p.fetches(), []string{"kubelet newest of 1.34.1", "kubectl newest of 1.34.1"}; !slices.Equal(got, want) {
						t.Errorf("plan fetches %q, want %q", got, want)
					}
					var warned []string
					for _, it := range p.Report {
						if it.Code == "manifest_version_missing" && it.Kind == "warning" {
							warned = append(warned, it.Tool)
						}
					}
					if !slices.Equal(warned, []string{"kubelet", "kubectl"}) {
						t.Errorf("manifest_version_missing warnings for %q, want kubelet and kubectl: %+v", warned, p.Report)
					}

					r = run(t, nil, append([]string{"--events-dir", "/events"}, args...)...).must(t, ExitOK)
					if !strings.Contains(r.stdout, "+ fetch kubelet="+tc.want+" ("+string(tc.arch)+") with ") {
						t.Errorf("boot output names no fetch of %s:\n%s", tc.want, r.stdout)
					}
					rec := loadRec(t, root)
					for _, tool := range []string{"kubelet", "kubectl"} {
						target := filepath.Join(root, "opt/bin", tool)
						if got := rec.Files["/opt/bin/"+tool].Source.Version; got != tc.want {
							t.Errorf("%s came from %s, want %s", tool, got, tc.want)
						}
						if m := elfMachine(t, target); m != tc.machine {
							t.Errorf("%s is %s, want %s", tool, m, tc.machine)
						}
					}
					if events := runEvent(t, root, "/events"); !strings.Contains(events, "no kubelet entry for "+rr.distro+" "+string(tc.arch)+" serves Kubernetes 1.34.1") {
						t.Errorf("the run's event does not say the version was not in the manifest: %q", events)
					}
					if got := planOps(t, args...); len(got) != 0 {
						t.Errorf("boot again plans %q", got)
					}
					// The image test after boot checks the targets as the
					// revisions boot put there; strict, it refuses them.
					verify := []string{"--mode=verify", "--targets", "--exec", "--k8s-version", "1.34.1", "--root", root, "--arch", string(tc.arch), manifest}
					run(t, nil, verify...).must(t, ExitOK)
					run(t, nil, append([]string{"--require-manifest-version"}, verify...)...).must(t, ExitVerify)
				})
			}
			host.Unchanged(t)
		})
	}
}

// runEvent is the message of the run's event in dir under root.
func runEvent(t *testing.T, root, dir string) string {
	t.Helper()
	files, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var ev map[string]string
		if err := json.Unmarshal(fileContent(t, filepath.Join(root, dir, f.Name())), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["TaskName"] == "reconcile.boot" {
			return ev["Message"]
		}
	}
	t.Fatalf("no reconcile.boot event in %s", dir)
	return ""
}

// TestBootUnlistedVersionFromTheImage: a version no entry names but the
// image holds, as a cached package (the newest revision for the node's
// arch) or as a versioned binary the record attributes to it (baked by an
// older manifest), is served without a fetch: the root has no repository.
func TestBootUnlistedVersionFromTheImage(t *testing.T) {
	rr := rootRepos[0]
	pkgbuild.RequireFormat(t, rr.format)
	manifest := rr.manifest(t, rr.rev("1.34.10", "1"))
	fill := func(t *testing.T, root string) {
		for _, tool := range []string{"kubelet", "kubectl"} {
			for _, v := range []string{rr.rev("1.34.1", "1"), rr.rev("1.34.1", "2"), rr.rev("1.34.10", "1"), rr.rev("1.34.11", "1")} {
				cache(t, root, tool, pkg(t, rr.format, tool, v, platform.AMD64), "")
			}
			cache(t, root, tool, pkg(t, rr.format, tool, rr.rev("1.34.1", "3"), platform.ARM64), "")
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, root string)
		op      string // of kubelet's action
		want    string
	}{{
		name: "cached package", prepare: fill, op: "extract", want: rr.rev("1.34.1", "2"),
	}, {
		name: "versioned binary",
		prepare: func(t *testing.T, root string) {
			fill(t, root)
			// An older image's manifest named 1.34.1-1.
			old := rr.manifest(t, rr.rev("1.34.1", "1"), rr.rev("1.34.10", "1"))
			run(t, nil, "--mode=bake", "--offline", "--root", root, "--arch", "amd64", old).must(t, ExitOK)
		},
		op: "install", want: rr.rev("1.34.1", "1"),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t, rr.distro)
			tc.prepare(t, root)
			args := []string{"--mode=boot", "--k8s-version", "1.34.1", "--root", root, "--arch", "amd64", manifest}
			p := jsonPlan(t, args...)
			if got := p.fetches(); len(got) != 0 {
				t.Errorf("plan fetches %q", got)
			}
			if a := p.Actions[0]; a.Tool != "kubelet" || a.Op != tc.op || a.PackageVersion != tc.want || a.Path != "/opt/bin/kubelet" {
				t.Errorf("kubelet's action is %+v, want %s of %s", a, tc.op, tc.want)
			}
			run(t, nil, args...).must(t, ExitOK)
			if got := loadRec(t, root).Files["/opt/bin/kubelet"].Source.Version; got != tc.want {
				t.Errorf("kubelet came from %s, want %s", got, tc.want)
			}
			if out := runBinary(t, filepath.Join(root, "opt/bin/kubelet")); out != "Kubernetes v1.34.1\n" {
				t.Errorf("kubelet reports %q", out)
			}
			if exists(filepath.Join(root, "opt/bin/kubelet-1.34.10")) {
				t.Error("the other versioned binaries stayed")
			}
		})
	}
}

// TestOneEntryServesManyLines: containerd (a constraint) and runc ("*")
// serve boots at two minors; two containerd entries whose constraints
// overlap are refused, naming both.
func TestOneEntryServesManyLines(t *testing.T) {
	pkgbuild.RequireFormat(t, platform.Deb)
	root := newRoot(t, "ubuntu-24.04")
	manifest := writeManifest(t, twoVersions+`  - {tool: containerd, distro: ubuntu-24.04, packageVersion: "2.3.3-ubuntu24.04u2", k8sVersion: ">= 1.33, < 1.37"}
  - {tool: runc, distro: ubuntu-24.04, packageVersion: "1.4.3-ubuntu24.04u2", k8sVersion: "*"}
`)
	for _, tool := range []string{"kubelet", "kubectl"} {
		for _, v := range []string{"1.34.10-ubuntu24.04u1", "1.35.7-ubuntu24.04u1"} {
			cache(t, root, tool, pkg(t, platform.Deb, tool, v, platform.AMD64), "")
		}
	}
	cache(t, root, "containerd", pkg(t, platform.Deb, "containerd", "2.3.3-ubuntu24.04u2", platform.AMD64), "")
	cache(t, root, "runc", pkg(t, platform.Deb, "runc", "1.4.3-ubuntu24.04u2", platform.AMD64), "")
	run(t, nil, "--mode=bake", "--offline", "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
	for _, k8s := range []string{"1.34.10", "1.35.7"} {
		// --keep-cache: the second boot's kubelet comes from the cache.
		args := []string{"--mode=boot", "--keep-cache", "--offline", "--k8s-version", k8s, "--root", root, "--arch", "amd64", manifest}
		run(t, nil, args...).must(t, ExitOK)
		run(t, nil, "--mode=verify", "--exec", "--k8s-version", k8s, "--root", root, "--arch", "amd64", manifest).must(t, ExitOK)
		for tool, want := range map[string]string{"kubelet": k8s, "containerd": "2.3.3", "runc": "1.4.3"} {
			if out := runBinary(t, filepath.Join(root, "opt/bin", tool)); out != "Kubernetes v"+want+"\n" {
				t.Errorf("boot %s: %s reports %q", k8s, tool, out)
			}
		}
	}

	overlap := filepath.Join(t.TempDir(), "overlap.yaml")
	writeFile(t, overlap, twoVersions+`  - {tool: containerd, distro: ubuntu-24.04, packageVersion: "2.3.3-ubuntu24.04u2", k8sVersion: ">= 1.33, < 1.36"}
  - {tool: containerd, distro: ubuntu-24.04, packageVersion: "2.3.4-ubuntu24.04u2", k8sVersion: ">= 1.35"}
`)
	before := snapshot(t, root)
	r := run(t, nil, "--mode=boot", "--k8s-version", "1.35.7", "--root", root, "--arch", "amd64", overlap).must(t, ExitBadInput)
	want := `components[5].k8sVersion (containerd ubuntu-24.04 2.3.4-ubuntu24.04u2): ">= 1.35" and components[4] (containerd 2.3.3-ubuntu24.04u2) ">= 1.33, < 1.36" both serve 1.35.0`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	if after := snapshot(t, root); !slices.Equal(before, after) {
		t.Error("a refused manifest changed the root")
	}
}
