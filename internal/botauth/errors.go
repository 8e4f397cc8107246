package botauth

import "errors"

// Sentinel errors. Every error returned by this package wraps at most one of them,
// so callers branch with errors.Is and log the message, which carries the context
// (label, component, agent).
var (
	// ErrNoSignature: the message carries no signature this verifier considers
	// (no Signature-Input at all, or none with the wanted tag). The request is then
	// treated as unsigned, not as forged.
	ErrNoSignature = errors.New("no signature")
	// ErrInvalid: a signature is malformed, uses something unsupported, or does not
	// verify.
	ErrInvalid = errors.New("invalid signature")
	// ErrExpired: the signature is outside its validity window (expired, or created
	// in the future beyond the allowed clock skew).
	ErrExpired = errors.New("signature outside its validity window")
	// ErrUnknownKey: no key with the signature's keyid is known (not in the agent's
	// directory, or no agent named to look it up).
	ErrUnknownKey = errors.New("unknown key")
	// ErrDirectory: fetching or parsing the agent's key directory failed (or a
	// failure is cached).
	ErrDirectory = errors.New("key directory unavailable")
	// ErrNotAllowed: the Signature-Agent is not on the list of agents we may fetch.
	ErrNotAllowed = errors.New("signature agent not allowed")
)
