package botauth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
)

// Thumbprint is the RFC 7638 JWK thumbprint (base64url, no padding) of an
// Ed25519 public key: the keyid Web Bot Auth uses. The JWK's required members for
// an OKP key are crv, kty and x (RFC 8037 §2), in that lexicographic order with no
// whitespace. It returns "" for a key that is not 32 bytes.
func Thumbprint(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	const prefix = `{"crv":"Ed25519","kty":"OKP","x":"`
	buf := make([]byte, 0, len(prefix)+base64.RawURLEncoding.EncodedLen(len(pub))+2)
	buf = append(buf, prefix...)
	buf = base64.RawURLEncoding.AppendEncode(buf, pub)
	buf = append(buf, `"}`...)
	sum := sha256.Sum256(buf)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
