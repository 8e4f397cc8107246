// Package bundle turns operator configuration into signed, versioned bundles and checks the
// bundles a node receives before anything acts on them.
//
// The path of a change is: the operator writes YAML; ParseSource decodes it strictly and
// validates it by compiling it (snapshot.Compile, the same check every node runs); Sign
// encodes the Body canonically and signs it with one or more operator keys (Ed25519);
// co-signers add theirs with AddSignature; Encode writes the bundle file. A node reads the
// file with Decode and calls Verify with the operator keys of its own bootstrap file: it
// gets the Body only if at least Trust.Required distinct trusted keys signed exactly these
// bytes and the configuration inside still validates. Every refusal names its reason and
// wraps one of the sentinel errors (ErrUnsigned, ErrUntrustedKey, ErrBadSignature,
// ErrTooFewSignatures, ErrTooLarge, ErrInvalid), so callers can count refusals by kind.
//
// Config is untrusted input, whoever wrote it: every size is bounded (MaxSourceBytes,
// MaxBodyBytes, MaxBundleBytes, MaxSignatures, alias expansion), unknown keys are errors,
// and what is signed is the canonical JSON body, never re-serialised YAML, so the bytes a
// node verifies are the bytes the operators signed.
//
// The package is pure: it does no network or disk I/O, keeps no state and starts no
// goroutines. Whether a serial is newer than the active one, and where bundles are stored,
// are the caller's business.
package bundle
