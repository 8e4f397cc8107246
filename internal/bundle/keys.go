package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Text forms of keys. The prefixes name the algorithm, so that another can be added later
// without guessing, and differ between public and private keys, so that a private key
// pasted where a public one belongs is caught rather than published.
const (
	publicPrefix  = "ed25519:"
	privatePrefix = "ed25519-private:"
)

// b64 is strict standard base64: one spelling per key, no stray padding bits or newlines.
var b64 = base64.StdEncoding.Strict()

// GenerateKey returns a new operator key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// FormatPublicKey returns pub as "ed25519:" + base64 of its 32 bytes, the form used in
// node bootstrap files.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return publicPrefix + b64.EncodeToString(pub)
}

// ParsePublicKey reads a key written by FormatPublicKey. Surrounding spaces are ignored.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, privatePrefix) {
		return nil, errors.New("public key: this is a private key; give the public key (rhizome keygen prints both)")
	}
	rest, ok := strings.CutPrefix(s, publicPrefix)
	if !ok {
		return nil, fmt.Errorf("public key: want the prefix %q", publicPrefix)
	}
	raw, err := b64.DecodeString(rest)
	if err != nil {
		return nil, errors.New("public key: bad base64")
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// FormatPrivateKey returns priv as "ed25519-private:" + base64 of its 32-byte seed (the
// seed is the whole secret; the rest of an ed25519.PrivateKey is the public key). It
// returns "" for a value that is not a private key, rather than panicking.
func FormatPrivateKey(priv ed25519.PrivateKey) string {
	if len(priv) != ed25519.PrivateKeySize {
		return ""
	}
	return privatePrefix + b64.EncodeToString(priv.Seed())
}

// ParsePrivateKey reads a key written by FormatPrivateKey. Surrounding spaces are ignored.
// Errors never quote the input, since it is a secret.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, privatePrefix)
	if !ok {
		if strings.HasPrefix(s, publicPrefix) {
			return nil, errors.New("private key: this is a public key")
		}
		return nil, fmt.Errorf("private key: want the prefix %q", privatePrefix)
	}
	raw, err := b64.DecodeString(rest)
	if err != nil {
		return nil, errors.New("private key: bad base64")
	}
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("private key: %d bytes, want a %d-byte seed", len(raw), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(raw), nil
}

// KeyID returns the first 16 hex digits of the SHA-256 of pub: short enough to read in a
// log line, long enough (64 bits) that operators' keys do not collide by accident. It is a
// name, not a proof: Verify checks the signature with the trusted key itself.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// validKeyID reports whether s has KeyID's form: 16 lower-case hex digits.
func validKeyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
