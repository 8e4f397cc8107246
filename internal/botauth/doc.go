// Package botauth verifies crawler identity with Web Bot Auth: HTTP Message
// Signatures (RFC 9421) made with Ed25519 keys that a crawler publishes in a key
// directory (draft-meunier-http-message-signatures-directory) and names with the
// Signature-Agent header (draft-meunier-web-bot-auth-architecture).
//
// The package has three layers, each usable alone:
//
//   - RFC 9421 for Ed25519: SignatureBase, Sign and VerifyRequest build and check
//     signature bases byte for byte as the RFC specifies, so that a crawler signing
//     for the largest edge network verifies here unchanged.
//   - Directory fetches and caches key directories. It fetches only agents the
//     operator allows, over https, from public addresses, with one fetch per agent
//     at a time and a global cap, because an attacker controls every header we see.
//   - Verifier combines both into the checks Web Bot Auth asks for (tag, validity
//     window, covered @authority and Signature-Agent).
//
// The package is a leaf: it imports nothing of rhizome, holds no global state and
// never panics on input. It keeps no nonce database (crawlers use short expiries);
// replay protection beyond the validity window is the caller's business.
package botauth
