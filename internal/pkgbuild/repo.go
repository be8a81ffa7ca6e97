package pkgbuild

import (
	"os"
	"os/exec"
	"path/filepath"
)

// AptRepo makes a flat apt repository in dir holding debs and returns the
// apt options that point apt-get and apt-cache at it alone and keep every
// file apt writes under dir: the host's apt configuration is never read for
// sources nor changed.
func AptRepo(dir string, debs ...string) ([]string, error) {
	repo := filepath.Join(dir, "repo")
	if err := copyInto(filepath.Join(repo, "pool"), debs); err != nil {
		return nil, err
	}
	// --multiversion: without it dpkg-scanpackages keeps only the newest.
	cmd := exec.Command("dpkg-scanpackages", "--multiversion", "pool", "/dev/null")
	cmd.Dir = repo
	index, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(repo, "Packages"), index, 0o644); err != nil {
		return nil, err
	}
	// apt creates neither the lists directory nor its partial/.
	if err := os.MkdirAll(filepath.Join(dir, "lists", "partial"), 0o755); err != nil {
		return nil, err
	}
	sources := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(sources, []byte("deb [trusted=yes] file:"+repo+" ./\n"), 0o644); err != nil {
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

// DnfRepo makes an rpm-md repository in dir holding rpms (createrepo_c) and
// returns the dnf options that point dnf at it alone and keep every file dnf
// writes under dir.
func DnfRepo(dir string, rpms ...string) ([]string, error) {
	repo := filepath.Join(dir, "repo")
	if err := copyInto(repo, rpms); err != nil {
		return nil, err
	}
	if err := run(dir, "createrepo_c", "--quiet", repo); err != nil {
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
