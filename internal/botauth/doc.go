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
// Agents are compared in one form only, NormalizeAgent's "https://host[:port]";
// callers matching Signature-Agent against a crawler list normalise the list with
// it too, so that "https://chatgpt.com:443" and "https://chatgpt.com" match.
//
// Replay window. The package keeps no nonce database, so a captured signed
// request verifies again, unchanged, until its signature expires. Web Bot Auth
// crawlers cover only "@authority" and "signature-agent" (Verify does not require
// "@method" or "@path", or it would refuse them), so such a signature can be
// replayed on that host with any method and path for its whole validity. Verifier
// bounds that window: expires-created may be at most MaxValidity, 5 minutes by
// default (crawlers use about a minute). Replay protection beyond it, and any
// binding of a payment to one request, is the caller's business: pay-per-crawl
// requires its payment header to be covered (Signed.Covers).
//
// Parsing limits. Everything before the key lookup is controlled by an
// unauthenticated client, so it is bounded: at most 8 KiB each of
// Signature-Input, Signature and Signature-Agent (all lines together), at most
// 8 signatures per message and 32 covered components per signature; beyond that
// the message is refused with ErrInvalid. Duplicate components are found with a
// set and each structured field is parsed at most once per signature base, so a
// verification is linear in the bytes it reads.
//
// The package is a leaf: it imports nothing of rhizome, holds no global state and
// never panics on input.
package botauth
