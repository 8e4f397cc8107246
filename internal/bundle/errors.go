package bundle

import (
	"errors"
	"strings"
)

// Limits on what this package reads. Each exists so that an oversized input is refused with
// a clear reason at the door, before it costs memory or time (the November 2025 outage was a
// config file past a limit that only the proxy knew about).
const (
	MaxSourceBytes = 1 << 20 // YAML source an operator may sign
	MaxBundleBytes = 4 << 20 // signed bundle file, as Decode reads it
	MaxSignatures  = 16      // signatures on one bundle: more than any M-of-N needs
	// MaxBodyBytes bounds the canonical body: its base64 form, plus room for MaxSignatures
	// signatures and the JSON around them, must fit in MaxBundleBytes.
	MaxBodyBytes = (MaxBundleBytes - 8<<10) / 4 * 3
	// maxNodes bounds the YAML nodes ParseSource visits, aliases and merge keys expanded:
	// no more than a source of MaxSourceBytes could spell out without aliases (a node takes
	// at least two bytes, as in "a,"), so anchors can save typing but cannot make a
	// document bigger (billion laughs).
	maxNodes = MaxSourceBytes / 2
	// maxDepth bounds nesting while decoding YAML; the schema is about six levels deep, so
	// anything deeper is a mistake or a cycle (`&a {<<: *a}`).
	maxDepth = 32
	// maxErrors bounds the decoding errors reported at once; the first ones are what an
	// operator fixes first anyway.
	maxErrors = 20
)

// Sentinel errors. Every refusal from this package wraps exactly the sentinels that apply,
// so that callers can tell reasons apart with errors.Is while the text says the details.
var (
	// ErrUnsigned: a bundle with no signature at all.
	ErrUnsigned = errors.New("unsigned bundle")
	// ErrUntrustedKey: a signature by a key that is not in the node's Trust.
	ErrUntrustedKey = errors.New("key not trusted")
	// ErrBadSignature: a signature by a trusted key that does not verify over the body,
	// i.e. the body or the signature was changed after signing.
	ErrBadSignature = errors.New("invalid signature")
	// ErrTooFewSignatures: fewer distinct trusted keys signed validly than Trust.Required.
	// It comes along with ErrUntrustedKey or ErrBadSignature when those caused the shortfall.
	ErrTooFewSignatures = errors.New("too few signatures")
	// ErrTooLarge: an input past one of the size limits.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid: malformed input, or a body or config that fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrBadTrust: the node's own Trust is unusable (no keys, Required out of range, a key
	// filed under the wrong id). It is the node's mistake, not the bundle's.
	ErrBadTrust = errors.New("bad trust configuration")
)

// invalidError marks err as ErrInvalid without changing its text, so that snapshot's field
// path messages reach the operator exactly as Compile wrote them.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }

func invalid(err error) error {
	if err == nil || errors.Is(err, ErrInvalid) {
		return err
	}
	return invalidError{err}
}

// listError joins several reasons on one line ("; "), unlike errors.Join, because refusals
// end up in single-line logs and status pages.
type listError []error

func (l listError) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (l listError) Unwrap() []error { return l }
