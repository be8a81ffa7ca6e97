package pkgbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// AptRepo makes a flat apt repository in dir holding debs and returns the
// apt options that point apt-get and apt-cache at it alone and keep every
// file apt writes under dir: the host's apt configuration is never read for
// sources nor changed.
func AptRepo(dir string, debs ...string) ([]string, error) {
	line, err := aptIndex(filepath.Join(dir, "repo"), debs)
	if err != nil {
		return nil, err
	}
	// apt creates neither the lists directory nor its partial/.
	if err := os.MkdirAll(filepath.Join(dir, "lists", "partial"), 0o755); err != nil {
		return nil, err
	}
	sources := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(sources, []byte(line), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"-o", "Dir::Etc::SourceList=" + sources,
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Architectures::=amd64",
		"-o", "APT::Architectures::=arm64",
		// The _apt user cannot read a root-owned temp dir.
		"-o", "APT::Sandbox::User=root",
	}, nil
}

// AptRootRepo makes a flat apt repository in dir holding debs and names it
// in root's /etc/apt/sources.list.d/<list>, as an image's own source list,
// for a package manager working on root. It returns the list's path under
// root ("/etc/apt/sources.list.d/local.list").
func AptRootRepo(dir, root, list string, debs ...string) (string, error) {
	line, err := aptIndex(dir, debs)
	if err != nil {
		return "", err
	}
	rel := "/etc/apt/sources.list.d/" + list
	if err := writeUnder(root, rel, line); err != nil {
		return "", err
	}
	return rel, nil
}

// aptIndex copies debs into repo/pool, indexes them and returns the
// sources.list line for the repository.
func aptIndex(repo string, debs []string) (string, error) {
	if err := copyInto(filepath.Join(repo, "pool"), debs); err != nil {
		return "", err
	}
	// --multiversion: without it dpkg-scanpackages keeps only the newest.
	cmd := exec.Command("dpkg-scanpackages", "--multiversion", "pool", "/dev/null")
	cmd.Dir = repo
	index, err := cmd.Output()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(repo, "Packages"), index, 0o644); err != nil {
		return "", err
	}
	return "deb [trusted=yes] file:" + repo + " ./\n", nil
}

// DnfRootRepo makes an rpm-md repository in dir holding rpms and names it
// in root's /etc/yum.repos.d/<id>.repo, with an os-release of Azure Linux
// 3.0, for a package manager working on root.
func DnfRootRepo(dir, root, id string, rpms ...string) error {
	if err := dnfIndex(dir, rpms); err != nil {
		return err
	}
	conf := fmt.Sprintf("[%s]\nname=%s\nbaseurl=file://%s\nenabled=1\ngpgcheck=0\n", id, id, dir)
	if err := writeUnder(root, "/etc/yum.repos.d/"+id+".repo", conf); err != nil {
		return err
	}
	return writeUnder(root, "/etc/os-release", "ID=azurelinux\nVERSION_ID=\"3.0\"\n")
}

func dnfIndex(repo string, rpms []string) error {
	if err := copyInto(repo, rpms); err != nil {
		return err
	}
	return run(filepath.Dir(repo), "createrepo_c", "--quiet", repo)
}

// writeUnder writes content to the absolute path rel under root, creating
// its directory.
func writeUnder(root, rel, content string) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

// DnfRepo makes an rpm-md repository in dir holding rpms (createrepo_c) and
// returns the dnf options that point dnf at it alone and keep every file dnf
// writes under dir.
func DnfRepo(dir string, rpms ...string) ([]string, error) {
	repo := filepath.Join(dir, "repo")
	if err := dnfIndex(repo, rpms); err != nil {
		return nil, err
	}
	return []string{
		"--installroot=" + filepath.Join(dir, "installroot"),
		"--releasever=3.0",
		"--setopt=reposdir=/dev/null",
		"--setopt=cachedir=" + filepath.Join(dir, "dnfcache"),
		"--repofrompath=local,file://" + repo,
		"--repo=local",
		"--nogpgcheck",
		// This plugin writes /var/cache/dnf/packages.db whatever the options.
		"--disableplugin=generate_completion_cache",
	}, nil
}

// copyInto copies files into dir, creating it.
func copyInto(dir string, files []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
