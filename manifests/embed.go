// Package manifests embeds the default components manifest in the binary, so
// `reconcile --dry-run` works with no file at hand.
package manifests

import _ "embed"

// Name is how messages refer to the embedded manifest.
const Name = "manifests/components.yaml (embedded)"

//go:embed components.yaml
var Components []byte
