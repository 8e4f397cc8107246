package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// domain is prefixed to the body before signing, so that an operator key's signature over
// a bundle can never be replayed as a signature over anything else it signs (node reports,
// purge ids), nor the other way round. Bump the version if the body format changes.
const domain = "rhizome-bundle-v1\n"

// Signed is a bundle file: the body bytes exactly as signed, and the signatures over them.
// The body is kept as bytes, not as a Body, because signatures cover bytes: re-encoding a
// decoded body could differ by a byte and break them.
type Signed struct {
	Body       []byte      `json:"body"` // canonical body bytes (base64 in JSON)
	Signatures []Signature `json:"signatures"`
}

// Signature is one operator's signature over a bundle body.
type Signature struct {
	KeyID string `json:"key_id"` // KeyID of the signing key: which trusted key to check with
	Sig   []byte `json:"sig"`    // Ed25519 over "rhizome-bundle-v1\n" + Body (domain separation)
}

// message returns what is signed for body.
func message(body []byte) []byte {
	m := make([]byte, 0, len(domain)+len(body))
	return append(append(m, domain...), body...)
}

// Sign checks body as a node would (Validate, serial, parent, encoding), encodes it
// canonically and signs it with each of keys. At least one key is required; more are for
// M-of-N bundles whose signers are all at hand (otherwise see AddSignature). It never signs
// a body that Verify would refuse for its content.
func Sign(body *Body, keys ...ed25519.PrivateKey) (*Signed, error) {
	if body == nil {
		return nil, invalid(errors.New("body: nil"))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("sign: %w: no key given", ErrUnsigned)
	}
	// Field checks first: their messages name the config path, which is what an operator
	// needs; the canonical round trip below catches only encoding oddities.
	if err := checkBody(body); err != nil {
		return nil, err
	}
	raw, err := body.Canonical()
	if err != nil {
		return nil, invalid(err)
	}
	if _, err := decodeBody(raw); err != nil {
		return nil, err
	}
	s := &Signed{Body: raw}
	for _, k := range keys {
		if err := s.sign(k); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// SignUnchecked encodes and signs body without checking it: what a broken or hostile tool
// could produce with a stolen or careless operator key. Nodes must refuse what it makes
// when the content is bad; the demo and the tests use it to show that they do. Never use it
// to sign a real bundle (rhizome bundle sign calls Sign).
func SignUnchecked(body *Body, key ed25519.PrivateKey) (*Signed, error) {
	raw, err := body.Canonical()
	if err != nil {
		return nil, err
	}
	s := &Signed{Body: raw}
	if err := s.sign(key); err != nil {
		return nil, err
	}
	return s, nil
}

// AddSignature adds key's signature, for M-of-N co-signing: each operator adds theirs to
// the bundle the first one signed. The body is checked first, so that no operator signs a
// body a node would refuse; a key that already signed is an error, since it would not count
// twice anyway. It does not check the other signatures (that needs a Trust: see Verify).
func (s *Signed) AddSignature(key ed25519.PrivateKey) error {
	if _, err := decodeBody(s.Body); err != nil {
		return err
	}
	return s.sign(key)
}

func (s *Signed) sign(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("sign: not an Ed25519 private key")
	}
	if len(s.Signatures) >= MaxSignatures {
		return fmt.Errorf("sign: %w: a bundle carries at most %d signatures", ErrTooLarge, MaxSignatures)
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	for _, sig := range s.Signatures {
		if sig.KeyID == id {
			return fmt.Errorf("sign: key %s has already signed this bundle", id)
		}
	}
	s.Signatures = append(s.Signatures, Signature{KeyID: id, Sig: ed25519.Sign(key, message(s.Body))})
	return nil
}

// Hash returns the hex SHA-256 of the body bytes: the bundle's id, which mesh announcements
// carry and a child bundle names as its Parent. Signatures are not part of it, so adding
// one does not change which bundle it is.
func (s *Signed) Hash() string {
	sum := sha256.Sum256(s.Body)
	return hex.EncodeToString(sum[:])
}

// Encode returns the bundle file: JSON with the body in base64. It refuses a bundle that
// Decode would refuse for its size, so that nothing unloadable is ever written.
func (s *Signed) Encode() ([]byte, error) {
	if len(s.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("bundle: %w: %d signatures exceed the limit of %d", ErrTooLarge, len(s.Signatures), MaxSignatures)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if len(b) > MaxBundleBytes {
		return nil, fmt.Errorf("bundle: %w: %d bytes exceed the limit of %d", ErrTooLarge, len(b), MaxBundleBytes)
	}
	return b, nil
}

// Decode reads a bundle file: at most MaxBundleBytes, strict JSON (no unknown fields,
// nothing after the value), a non-empty body, at most MaxSignatures signatures, each with a
// well-formed key id and a signature of the right size. It checks the form only; Verify
// decides whether to believe it.
func Decode(b []byte) (*Signed, error) {
	if len(b) > MaxBundleBytes {
		return nil, fmt.Errorf("bundle: %w: %d bytes exceed the limit of %d", ErrTooLarge, len(b), MaxBundleBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Signed
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("bundle: %w", invalid(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("bundle: %w", invalid(errors.New("data after the JSON value")))
	}
	if len(s.Body) == 0 {
		return nil, fmt.Errorf("bundle: %w", invalid(errors.New("body: empty")))
	}
	if len(s.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("bundle: %w: %d signatures exceed the limit of %d", ErrTooLarge, len(s.Signatures), MaxSignatures)
	}
	for i, sig := range s.Signatures {
		if !validKeyID(sig.KeyID) {
			return nil, fmt.Errorf("bundle: %w", invalid(fmt.Errorf("signatures[%d].key_id: want 16 lower-case hex digits", i)))
		}
		if len(sig.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("bundle: %w", invalid(fmt.Errorf("signatures[%d].sig: %d bytes, want %d", i, len(sig.Sig), ed25519.SignatureSize)))
		}
	}
	return &s, nil
}

// ValidSigners returns the ids of the distinct trusted keys whose signatures over s are
// valid: the signers that counted towards t.Required, for status pages and logs.
func ValidSigners(s *Signed, t Trust) []string {
	var ids []string
	seen := map[string]bool{}
	msg := message(s.Body)
	for _, sig := range s.Signatures {
		pub, ok := t.Keys[sig.KeyID]
		if !ok || seen[sig.KeyID] || !ed25519.Verify(pub, msg, sig.Sig) {
			continue
		}
		seen[sig.KeyID] = true
		ids = append(ids, sig.KeyID)
	}
	return ids
}
