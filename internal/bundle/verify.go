package bundle

import (
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Trust is what a node believes: the operator keys from its own bootstrap file, and how
// many of them must sign a bundle. Requiring M of N keys means that no single stolen
// operator key can change the network.
type Trust struct {
	Keys     map[string]ed25519.PublicKey // by KeyID
	Required int                          // M of len(Keys); at least 1
}

// NewTrust returns a Trust of keys requiring required of them, or an ErrBadTrust error.
func NewTrust(required int, keys ...ed25519.PublicKey) (Trust, error) {
	t := Trust{Keys: make(map[string]ed25519.PublicKey, len(keys)), Required: required}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return Trust{}, fmt.Errorf("%w: key %d is not an Ed25519 public key", ErrBadTrust, i)
		}
		id := KeyID(k)
		if _, dup := t.Keys[id]; dup {
			return Trust{}, fmt.Errorf("%w: key %s is listed twice", ErrBadTrust, id)
		}
		t.Keys[id] = k
	}
	if err := t.check(); err != nil {
		return Trust{}, err
	}
	return t, nil
}

// check refuses a Trust that cannot be used safely: no keys, a Required that is not
// satisfiable or is 0 (which would accept unsigned bundles), or a key filed under another
// key's id (which would let the wrong key vouch for a signer).
func (t Trust) check() error {
	if len(t.Keys) == 0 {
		return fmt.Errorf("%w: no operator keys", ErrBadTrust)
	}
	if t.Required < 1 || t.Required > len(t.Keys) {
		return fmt.Errorf("%w: required %d out of range 1..%d", ErrBadTrust, t.Required, len(t.Keys))
	}
	for id, k := range t.Keys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: key %s is not an Ed25519 public key", ErrBadTrust, id)
		}
		if got := KeyID(k); got != id {
			return fmt.Errorf("%w: the key filed under %s has id %s", ErrBadTrust, id, got)
		}
	}
	return nil
}

// reason is a refusal whose text is written out in full and which wraps its sentinel, so
// that messages read naturally ("signature 0: key ... is not trusted") and still match
// errors.Is.
type reason struct {
	text string
	kind error
}

func (r reason) Error() string { return r.text }
func (r reason) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return reason{fmt.Sprintf(format, args...), kind}
}

// Verify decides whether a node may believe s. First the signatures: at least t.Required
// distinct trusted keys must have signed the body bytes validly. Signatures by unknown keys,
// invalid ones and repeats do not count, but do not spoil a bundle that has enough valid
// ones either, so that a peer relaying a bundle cannot get it refused by appending junk, and
// a bundle can carry signatures for keys that only some nodes trust yet (key rotation).
// Only then, so that nothing unauthenticated is parsed, the body: strict canonical JSON,
// then Validate.
//
// Verify never panics. Its error says exactly why, and wraps the sentinels that apply:
//
//	unsigned bundle                                          ErrUnsigned
//	signature 0: key 1a2b3c4d5e6f7a8b is not trusted; ...    ErrUntrustedKey, ErrTooFewSignatures
//	signature 1 by key 1a2b3c4d5e6f7a8b: invalid; ...        ErrBadSignature, ErrTooFewSignatures
//	1 valid signature of 2 required                          ErrTooFewSignatures
//	body: serial: must be > 0                                ErrInvalid
//	body: sites[0].origins[0].url: ...                       ErrInvalid
//	body: too large: ...                                     ErrTooLarge
//
// A misconfigured t is an ErrBadTrust error. Verify does not know which serial the node
// runs; refusing older or replayed serials is the caller's job.
func Verify(s *Signed, t Trust) (body *Body, err error) {
	defer func() {
		// The checks below are written not to panic and fuzzed for it; this is the last
		// line, so that a bug here refuses one bundle instead of taking the node down.
		if r := recover(); r != nil {
			body, err = nil, fmt.Errorf("%w: internal error verifying bundle: %v", ErrInvalid, r)
		}
	}()
	if err := t.check(); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, invalid(errors.New("no bundle"))
	}
	if len(s.Body) > MaxBodyBytes {
		return nil, fmt.Errorf("body: %w: %d bytes exceed the limit of %d", ErrTooLarge, len(s.Body), MaxBodyBytes)
	}
	if len(s.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("bundle: %w: %d signatures exceed the limit of %d", ErrTooLarge, len(s.Signatures), MaxSignatures)
	}
	if len(s.Signatures) == 0 {
		return nil, ErrUnsigned
	}
	msg := message(s.Body)
	var problems listError
	counted := map[string]bool{}
	for i, sig := range s.Signatures {
		id := sig.KeyID
		if !validKeyID(id) {
			problems = append(problems, refuse(ErrUntrustedKey, "signature %d: malformed key id", i))
			continue
		}
		pub, ok := t.Keys[id]
		switch {
		case !ok:
			problems = append(problems, refuse(ErrUntrustedKey, "signature %d: key %s is not trusted", i, id))
		case counted[id]:
			problems = append(problems, fmt.Errorf("signature %d: key %s signed more than once; counted once", i, id))
		case !ed25519.Verify(pub, msg, sig.Sig):
			problems = append(problems, refuse(ErrBadSignature, "signature %d by key %s: invalid", i, id))
		default:
			counted[id] = true
		}
	}
	if n := len(counted); n < t.Required {
		plural := "s"
		if n == 1 {
			plural = ""
		}
		problems = append(problems, refuse(ErrTooFewSignatures, "%d valid signature%s of %d required", n, plural, t.Required))
		return nil, problems
	}
	return decodeBody(s.Body)
}
