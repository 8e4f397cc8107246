package botauth

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// Params are a signature's parameters (RFC 9421 §2.3).
type Params struct {
	Created, Expires       time.Time // zero = absent; whole seconds on the wire
	KeyID, Alg, Nonce, Tag string
}

// Signed is one parsed, verified signature.
type Signed struct {
	// Label is the signature's label in Signature-Input ("sig1").
	Label string
	// Components are the covered components in signing order, without quotes
	// around the name: "@authority", "signature-agent;key=\"sig1\"".
	Components []string
	// Params are the signature's parameters.
	Params Params
}

// Covers reports whether the signature covers the component (e.g.
// "crawler-exact-price"): pay-per-crawl requires its payment header to be
// covered. A bare name matches a covered component of that name that covers the
// whole value (plain, ;sf or ;bs), not one dictionary member (;key) nor a request
// component of a response (;req); a name with parameters must match exactly.
func (s Signed) Covers(component string) bool {
	if strings.IndexByte(component, ';') < 0 && !strings.HasPrefix(component, `"`) {
		for _, c := range s.Components {
			name, params, _ := strings.Cut(c, ";")
			if name != component {
				continue
			}
			if params == "" || params == "sf" || params == "bs" {
				return true
			}
		}
		return false
	}
	c, err := parseComponentArg(component)
	if err != nil {
		return false
	}
	return slices.Contains(s.Components, c.short())
}

// SignatureBase builds the RFC 9421 signature base of r for the given components
// and params (exported so tests can compare it byte for byte with the RFC's
// examples). Components are written as in Sign.
func SignatureBase(r *http.Request, components []string, p Params) ([]byte, error) {
	return signatureBase(message{req: r}, components, p)
}

// ResponseSignatureBase is SignatureBase for a response: it supports @status and
// takes components marked ;req from resp.Request (RFC 9421 §2.4).
func ResponseSignatureBase(resp *http.Response, components []string, p Params) ([]byte, error) {
	if resp == nil {
		return nil, errors.New("nil response")
	}
	return signatureBase(message{req: resp.Request, resp: resp}, components, p)
}

func signatureBase(m message, components []string, p Params) ([]byte, error) {
	comps, err := parseComponentArgs(components)
	if err != nil {
		return nil, err
	}
	line, err := serialiseParams(comps, p)
	if err != nil {
		return nil, err
	}
	return buildBase(m, comps, line)
}

func parseComponentArgs(components []string) ([]component, error) {
	comps := make([]component, len(components))
	for i, s := range components {
		c, err := parseComponentArg(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		comps[i] = c
	}
	return comps, nil
}

// serialiseParams writes the @signature-params value Sign uses: the covered
// components, then created, expires, keyid, alg, nonce, tag — the order of the
// RFC's examples and of Web Bot Auth crawlers.
func serialiseParams(comps []component, p Params) (string, error) {
	var b strings.Builder
	b.WriteByte('(')
	for i, c := range comps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c.ident)
	}
	b.WriteByte(')')
	sp := httpsfv.NewParams()
	if !p.Created.IsZero() {
		sp.Add("created", p.Created.Unix())
	}
	if !p.Expires.IsZero() {
		sp.Add("expires", p.Expires.Unix())
	}
	for _, kv := range [...]struct{ k, v string }{{"keyid", p.KeyID}, {"alg", p.Alg}, {"nonce", p.Nonce}, {"tag", p.Tag}} {
		if kv.v != "" {
			sp.Add(kv.k, kv.v)
		}
	}
	// Marshal an empty-valued item only to serialise the parameters with
	// httpsfv's string escaping and checks; drop the item's own value.
	s, err := httpsfv.Marshal(httpsfv.Item{Value: true, Params: sp})
	if err != nil {
		return "", fmt.Errorf("%w: signature parameters: %w", ErrInvalid, err)
	}
	b.WriteString(strings.TrimPrefix(s, "?1"))
	return b.String(), nil
}

// buildBase assembles the signature base (RFC 9421 §2.5) with paramsLine as the
// @signature-params value: for verification, the member exactly as received.
// It is linear in the components: duplicates are found with a set, and a
// dictionary field that several ;key components select from is parsed once.
func buildBase(m message, comps []component, paramsLine string) ([]byte, error) {
	var b strings.Builder
	seen := make(map[string]struct{}, len(comps))
	for _, c := range comps {
		if c.key != "" && m.dicts == nil {
			m.dicts = make(map[dictKey]dictResult)
		}
		if _, dup := seen[c.ident]; dup {
			return nil, fmt.Errorf("%w: component %s covered twice", ErrInvalid, c.ident)
		}
		seen[c.ident] = struct{}{}
	}
	for _, c := range comps {
		v, err := m.value(c)
		if err != nil {
			return nil, fmt.Errorf("%w: component %s: %w", ErrInvalid, c.ident, err)
		}
		b.WriteString(c.ident)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(paramsLine)
	return []byte(b.String()), nil
}

// Sign adds Signature-Input and Signature headers for label (e.g. "sig1")
// covering the components (e.g. "@authority", "signature-agent", "@method",
// "@path") to r. For crawlers, tests and the demo's synthetic crawler traffic.
//
// Components are lowercase field names or derived component names, optionally
// with parameters in structured-field syntax: `@query-param;name="Pet"`,
// `signature-agent;key="sig1"`, `example-dict;sf`. p.Alg, when set, must be
// "ed25519". Headers that the signature covers must be set before Sign.
func Sign(r *http.Request, label string, components []string, p Params, key ed25519.PrivateKey) error {
	if r == nil {
		return errors.New("sign: nil request")
	}
	return sign(message{req: r}, r.Header, label, components, p, key)
}

// SignResponse is Sign for a response (a key directory signing itself, in tests
// and the demo): components marked ;req are taken from resp.Request. It writes
// into resp.Header, which may be a ResponseWriter's header map.
func SignResponse(resp *http.Response, label string, components []string, p Params, key ed25519.PrivateKey) error {
	if resp == nil {
		return errors.New("sign: nil response")
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	return sign(message{req: resp.Request, resp: resp}, resp.Header, label, components, p, key)
}

func sign(m message, h http.Header, label string, components []string, p Params, key ed25519.PrivateKey) error {
	if !validKey(label) {
		return fmt.Errorf("sign: invalid label %q", label)
	}
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign: ed25519 private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if p.Alg != "" && p.Alg != "ed25519" {
		return fmt.Errorf("sign: unsupported alg %q", p.Alg)
	}
	if existing := h.Values("Signature-Input"); len(existing) > 0 {
		d, err := httpsfv.UnmarshalDictionary(existing)
		if err != nil {
			return fmt.Errorf("sign: existing Signature-Input: %w", err)
		}
		if _, dup := d.Get(label); dup {
			return fmt.Errorf("sign: label %q already used", label)
		}
	}
	comps, err := parseComponentArgs(components)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	line, err := serialiseParams(comps, p)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	base, err := buildBase(m, comps, line)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	sig := ed25519.Sign(key, base)
	// A new field line per signature: dictionaries combine across lines, and the
	// members already there stay byte for byte as their signers wrote them.
	h.Add("Signature-Input", label+"="+line)
	h.Add("Signature", label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
	return nil
}
