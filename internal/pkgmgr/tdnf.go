package pkgmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nodeimage/reconcile/internal/pkgversion"
	"github.com/nodeimage/reconcile/internal/platform"
)

// tdnf is for Azure Linux OS Guard images, which carry tdnf (3.5) and no
// dnf. It lists with "tdnf -j list available NAME" (tdnf's JSON: Name, Arch,
// Evr, Repo per package) and downloads with "tdnf install -y --downloadonly
// --downloaddir=DIR --nodeps NAME=EVR", the seed's form; --nodeps keeps
// tdnf from downloading the dependencies the root lacks beside the package.
// tdnf cannot be told an architecture: it downloads the host's, and Fetch
// refuses another.
type tdnf struct{ c *commander }

func (t *tdnf) command() string         { return "tdnf" }
func (t *tdnf) format() platform.Format { return platform.RPM }

// tdnfNotFound recognises tdnf's "Error(1011) : No matching packages".
func tdnfNotFound(out string) bool {
	return containsAny(out, "No matching packages", "Error(1011)")
}

// tdnfPackage is one entry of tdnf's JSON package list.
type tdnfPackage struct {
	Name, Arch, Evr, Repo string
}

func (t *tdnf) records(ctx context.Context, name string, arch platform.Arch) ([]record, error) {
	out, err := t.run(ctx, tdnfNotFound, "-j", "list", "available", name)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && tdnfNotFound(ce.Output) {
			return nil, nil
		}
		return nil, err
	}
	recs, bad, err := parseTdnfList(out, name, arch)
	if err != nil {
		return nil, err
	}
	for _, err := range bad {
		t.c.log.WarnContext(ctx, "ignoring a version tdnf offers", "package", name, "err", err)
	}
	return recs, nil
}

// parseTdnfList keeps the entries of package name built for arch that a
// repository offers (not "@System", the installed one).
func parseTdnfList(data []byte, name string, arch platform.Arch) ([]record, []error, error) {
	var pkgs []tdnfPackage
	if err := json.Unmarshal(data, &pkgs); err != nil {
		return nil, nil, fmt.Errorf("reading tdnf's package list: %w", err)
	}
	var (
		recs []record
		bad  []error
	)
	for _, p := range pkgs {
		if p.Name != name || p.Arch != arch.In(platform.RPM) || p.Repo == "@System" {
			continue
		}
		v, err := pkgversion.Parse(platform.RPM, p.Evr)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s %s: %w", name, p.Arch, err))
			continue
		}
		recs = append(recs, record{version: v, spec: name + "=" + p.Evr})
	}
	return recs, bad, nil
}

func (t *tdnf) update(ctx context.Context, _ bool) error {
	if _, err := t.run(ctx, nil, "--refresh", "makecache"); err != nil {
		return fmt.Errorf("refreshing the tdnf metadata: %w", err)
	}
	return nil
}

func (t *tdnf) download(ctx context.Context, rec record, _ platform.Arch, dir string) error {
	_, err := t.run(ctx, tdnfNotFound, "install", "-y", "--downloadonly", "--downloaddir="+dir, "--nodeps", rec.spec)
	return err
}

func (t *tdnf) run(ctx context.Context, final func(string) bool, args ...string) ([]byte, error) {
	var out []byte
	err := t.c.withPrivateDir(func(dir string) error {
		opts, err := rpmRootArgs(t.c, dir)
		if err != nil {
			return err
		}
		out, err = t.c.run(ctx, "", nil, final, "tdnf", append(opts, args...)...)
		return err
	})
	return out, err
}
