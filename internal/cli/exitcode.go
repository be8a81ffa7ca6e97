package cli

// Exit codes. Boot failures of a tool exit with the tool's own code from the
// manifest (kubelet 121, kubectl 122, azure-acr-credential-provider 205),
// which node provisioning already knows.
const (
	ExitOK       = 0
	ExitFailure  = 1 // an action failed (bake, verify I/O, …)
	ExitBadInput = 2 // bad manifest, flags, os-release, or cluster version; nothing changed
	ExitVerify   = 3 // verify found the disk differs from the manifest
	ExitLocked   = 4 // another run held the lock for the whole --lock-timeout
	ExitChanges  = 5 // --dry-run --detailed-exitcode: the plan has changes
	// ExitInterrupted is a run stopped by SIGTERM or SIGINT: its temp files
	// are removed and every target is whole (the old binary or the new).
	ExitInterrupted = 6
)

// Manifest exitCodes are 7–255: 0–6 are reconcile's own.
