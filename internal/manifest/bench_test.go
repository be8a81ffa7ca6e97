package manifest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nodeimage/reconcile/internal/manifest"
)

// pairs is a manifest of n components: kubelet and kubectl pairs of
// distinct versions, as a manifest with many lines grows.
func pairs(n int) []byte {
	var b strings.Builder
	b.WriteString("components:\n")
	for i := range n / 2 {
		for _, tool := range []string{"kubelet", "kubectl"} {
			fmt.Fprintf(&b, "  - tool: %s\n    distro: ubuntu-24.04\n    packageVersion: \"1.%d.%d-ubuntu24.04u1\"\n", tool, i/100, i%100)
		}
	}
	return []byte(b.String())
}

// distinctTools is the worst case of the rules across tools: every
// component its own tool with its own target and cache, about size bytes.
func distinctTools(size int) []byte {
	var tools, comps strings.Builder
	tools.WriteString("tools:\n")
	comps.WriteString("components:\n")
	for i := 0; tools.Len()+comps.Len() < size-300; i++ {
		fmt.Fprintf(&tools, "  tool-%d:\n    target: /usr/local/bin/tool-%d\n    cacheDir: /var/cache/tool-%d\n", i, i, i)
		fmt.Fprintf(&comps, "  - {tool: tool-%d, distro: azurelinux-3.0, packageVersion: \"1.%d.%d-1.azl3\"}\n", i, i/1000, i%1000)
	}
	return []byte(tools.String() + comps.String())
}

// BenchmarkParse shows how Parse grows with the manifest: every rule that
// spans entries is a map lookup or a sort, so the time per entry stays flat.
func BenchmarkParse(b *testing.B) {
	cases := []struct {
		name string
		data []byte
	}{}
	for _, n := range []int{2, 100, 1_000, 10_000} {
		cases = append(cases, struct {
			name string
			data []byte
		}{fmt.Sprintf("entries=%d", n), pairs(n)})
	}
	for _, size := range []int{64 << 10, manifest.MaxSize} {
		cases = append(cases, struct {
			name string
			data []byte
		}{fmt.Sprintf("distinct-tools-%dKiB", size>>10), distinctTools(size)})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := manifest.Parse("bench.yaml", c.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
