package observe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/nodeimage/reconcile/internal/state"
)

func TestObserveAttributesVersionedBinaries(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"kube-1.2.3", "kube-proxy-1.34.10", "kubelet-1.34.10", "kubelet", "kubelet-notes", ".reconcile-tmp-kubelet-abc"} {
		p := filepath.Join(dir, "opt/bin", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(name), 0o755)
	}
	os.MkdirAll(filepath.Join(dir, "opt/kubelet/downloads"), 0o755)
	os.WriteFile(filepath.Join(dir, "opt/kubelet/downloads/broken.deb"), []byte("not a package"), 0o644)
	os.WriteFile(filepath.Join(dir, "opt/kubelet/downloads/README"), []byte("not a package either"), 0o644)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	q := state.Query{
		Tools:     []string{"kube", "kube-proxy", "kubelet"},
		BinDirs:   []string{"/opt/bin"},
		CacheDirs: []string{"/opt/kubelet/downloads", "/opt/kubectl/downloads"},
		TempDirs:  []string{"/opt/bin", "/var/lib/reconcile"},
	}
	st, err := Observe(context.Background(), root, q)
	if err != nil {
		t.Fatal(err)
	}
	// Listed, not opened, until a plan asks for the packages.
	if pkgs := st.Cache["/opt/kubelet/downloads"]; len(pkgs) != 1 || !pkgs[0].Unopened || pkgs[0].Err != nil {
		t.Errorf("cache %+v: want the .deb listed, unopened", pkgs)
	}
	q.Packages = q.CacheDirs
	st, err = Observe(context.Background(), root, q)
	if err != nil {
		t.Fatal(err)
	}
	for tool, want := range map[string][]string{
		"kube":       {"/opt/bin/kube-1.2.3"},
		"kube-proxy": {"/opt/bin/kube-proxy-1.34.10"},
		"kubelet":    {"/opt/bin/kubelet-1.34.10"},
	} {
		if got := st.Versioned[tool]; !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tool, got, want)
		}
	}
	if !slices.Equal(st.Temps, []string{"/opt/bin/.reconcile-tmp-kubelet-abc"}) {
		t.Errorf("temps %v", st.Temps)
	}
	pkgs := st.Cache["/opt/kubelet/downloads"]
	if len(pkgs) != 1 || pkgs[0].Err == nil {
		t.Errorf("cache %+v: want the broken .deb with its error, nothing else", pkgs)
	}
	if got, ok := st.Cache["/opt/kubectl/downloads"]; !ok || got != nil {
		t.Errorf("a missing cache dir is observed as nil, got %v %v", got, ok)
	}
	if len(st.Record.Files) != 0 {
		t.Errorf("record %v without a state file", st.Record)
	}
}

// A record that cannot be read is an empty one with ErrRecordCorrupt:
// bad JSON, data after the JSON, a FIFO in its place (which must not
// block).
func TestCorruptRecordIsEmpty(t *testing.T) {
	for name, write := range map[string]func(p string) error{
		"bad json":      func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o644) },
		"trailing data": func(p string) error { return os.WriteFile(p, []byte(`{"format":1,"files":{}} {"format":1}`), 0o644) },
		"fifo":          func(p string) error { return syscall.Mkfifo(p, 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "var/lib/reconcile"), 0o755)
			if err := write(filepath.Join(dir, state.RecordPath)); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			rec, err := LoadRecord(root)
			if !errors.Is(err, ErrRecordCorrupt) || len(rec.Files) != 0 || rec.Files == nil {
				t.Errorf("rec %+v, err = %v; want an empty record and ErrRecordCorrupt", rec, err)
			}
			st, err := Observe(context.Background(), root, state.Query{})
			if err != nil || !errors.Is(st.RecordErr, ErrRecordCorrupt) {
				t.Errorf("observe: %v, RecordErr %v", err, st.RecordErr)
			}
		})
	}
}
