package state

// Artifact is a file that a download of a tarball or OCI artifact left in
// a cache dir, known by its name alone ("sha256-<hex>.tar.gz",
// "sha256-<hex>.manifest.json"): planning trusts the name, apply checks
// the content against the pin before it reads a byte of the tar.
type Artifact struct {
	File   string // absolute under the root
	Digest string // "sha256:<hex>" from the name
	// Manifest marks the manifest an OCI pull verified; Layer is then the
	// tarball it names (absolute, in the same dir), "" when the manifest
	// cannot be read (Err says why).
	Manifest bool
	Layer    string
	Err      error
}
