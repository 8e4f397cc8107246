package botauth

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"github.com/dunglas/httpsfv"
)

// Tag is the tag of Web Bot Auth request signatures.
const Tag = "web-bot-auth"

// Identity is a verified crawler.
type Identity struct {
	// Agent is the Signature-Agent, normalised to "https://host[:port]".
	Agent string
	// KeyID is the key's JWK thumbprint.
	KeyID string
	// Signed is the verified signature (Covers tells what it covers).
	Signed Signed
}

// Verifier checks Web Bot Auth requests. Its fields are read-only once in use;
// Verify is safe for concurrent use.
type Verifier struct {
	// Directory looks keys up by Signature-Agent; nil knows no key.
	Directory *Directory
	// MaxValidity is the longest expires-created accepted (default 24 h, the
	// architecture draft's recommendation).
	MaxValidity time.Duration
	// Skew is how far in the future created may be (default 1 min).
	Skew time.Duration
}

const (
	defaultMaxValidity = 24 * time.Hour
	defaultVerifySkew  = time.Minute
)

// Verify checks r as Web Bot Auth (draft-meunier-web-bot-auth-architecture).
// Every signature tagged "web-bot-auth" must verify; the identity is the first's.
// It requires created and expires, now within [created-Skew, expires],
// expires-created <= MaxValidity, alg ed25519 when given, and @authority covered.
// When a Signature-Agent header is present it must be covered and name an https
// origin (a structured-field string; the dictionary form of later drafts is
// accepted too, its member chosen by the signature's label and covered whole or
// with ;key); the keyid is looked up in that agent's directory. Without a
// Signature-Agent no key is known: ErrUnknownKey.
//
// Errors wrap ErrNoSignature (no signature tagged web-bot-auth: a signature with
// another tag is discarded, as the architecture draft allows, and the request
// is simply unsigned), ErrInvalid, ErrExpired, ErrUnknownKey, ErrDirectory or
// ErrNotAllowed. Checks that need no key run first, so a malformed or expired
// signature never triggers a directory fetch.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, now time.Time) (Identity, error) {
	if r == nil {
		return Identity{}, ErrNoSignature
	}
	all, err := parseSignatures(r.Header)
	if err != nil {
		return Identity{}, err
	}
	o := checkOpts{skew: v.Skew, maxValidity: v.MaxValidity, requireTimes: true}
	if o.skew <= 0 {
		o.skew = defaultVerifySkew
	}
	if o.maxValidity <= 0 {
		o.maxValidity = defaultMaxValidity
	}
	var id Identity
	n := 0
	for _, rs := range all {
		if rs.params.Tag != Tag {
			continue
		}
		// Policy checks that need no key come before checkSignature, which may
		// fetch a directory.
		if !coversIdent(rs, `"@authority"`) {
			return Identity{}, fmt.Errorf("signature %s: @authority not covered: %w", rs.label, ErrInvalid)
		}
		agent, err := signatureAgent(r.Header, rs)
		if err != nil {
			return Identity{}, err
		}
		lookup := func(keyid string) (ed25519.PublicKey, error) {
			if agent == "" {
				return nil, fmt.Errorf("no Signature-Agent: %w", ErrUnknownKey)
			}
			if v.Directory == nil {
				return nil, fmt.Errorf("no key directory configured: %w", ErrUnknownKey)
			}
			return v.Directory.Key(ctx, agent, keyid)
		}
		s, err := checkSignature(message{req: r}, rs, lookup, now, o)
		if err != nil {
			return Identity{}, err
		}
		if n == 0 {
			id = Identity{Agent: agent, KeyID: s.Params.KeyID, Signed: s}
		}
		n++
	}
	if n == 0 {
		return Identity{}, fmt.Errorf("no signature tagged %q: %w", Tag, ErrNoSignature)
	}
	return id, nil
}

// signatureAgent returns the normalised Signature-Agent for signature rs, "" when
// the request has none. The header must be covered by rs: otherwise anyone could
// swap in a directory of their own.
func signatureAgent(h http.Header, rs rawSignature) (string, error) {
	lines := h.Values("Signature-Agent")
	if len(lines) == 0 {
		return "", nil
	}
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("signature %s: Signature-Agent: %s: %w", rs.label, fmt.Sprintf(format, args...), ErrInvalid)
	}
	covered := func(ident string) bool { return coversIdent(rs, ident) }
	whole := covered(`"signature-agent"`) || covered(`"signature-agent";sf`)
	var agent string
	if item, err := httpsfv.UnmarshalItem(lines); err == nil {
		s, ok := item.Value.(string)
		if !ok {
			return fail("not a string")
		}
		if !whole {
			return fail("not covered by the signature")
		}
		agent = s
	} else if d, err := httpsfv.UnmarshalDictionary(lines); err == nil {
		// Later drafts: Signature-Agent: sig1="https://...", keyed by label.
		key := rs.label
		m, ok := d.Get(key)
		if !ok && len(d.Names()) == 1 {
			key = d.Names()[0]
			m, ok = d.Get(key)
		}
		if !ok {
			return fail("no member for label %q", rs.label)
		}
		item, isItem := m.(httpsfv.Item)
		s, isString := item.Value.(string)
		if !isItem || !isString {
			return fail("member %q is not a string", key)
		}
		keyIdent, _ := httpsfv.Marshal(httpsfv.Item{Value: "signature-agent", Params: keyParams(key)})
		if !whole && !covered(keyIdent) {
			return fail("not covered by the signature")
		}
		agent = s
	} else {
		return fail("not a structured-field string: %v", err)
	}
	origin, err := normaliseAgent(agent)
	if err != nil {
		return fail("%v", err)
	}
	return origin, nil
}

// coversIdent reports whether rs covers the serialised component identifier.
func coversIdent(rs rawSignature, ident string) bool {
	for _, item := range rs.list.Items {
		c, err := componentFromItem(item)
		if err == nil && c.ident == ident {
			return true
		}
	}
	return false
}

func keyParams(key string) *httpsfv.Params {
	p := httpsfv.NewParams()
	p.Add("key", key)
	return p
}

// NeedsFetch reports whether verifying r would fetch a key directory (its
// Signature-Agent is allowed and not cached, fresh or negatively): the bot stage
// then runs on a goroutine with a time budget instead of inline. Cheap; no
// allocation for unsigned requests. It does not check the signature, so a
// malformed one may report true and then fail before any fetch.
func (v *Verifier) NeedsFetch(r *http.Request) bool {
	if r == nil || v.Directory == nil {
		return false
	}
	// Direct map reads with canonical keys: no allocation on the common path.
	if len(r.Header["Signature-Input"]) == 0 {
		return false
	}
	lines := r.Header["Signature-Agent"]
	if len(lines) == 0 {
		return false
	}
	var agents []string
	if item, err := httpsfv.UnmarshalItem(lines); err == nil {
		if s, ok := item.Value.(string); ok {
			agents = append(agents, s)
		}
	} else if d, err := httpsfv.UnmarshalDictionary(lines); err == nil {
		for _, k := range d.Names() {
			m, _ := d.Get(k)
			if item, ok := m.(httpsfv.Item); ok {
				if s, ok := item.Value.(string); ok {
					agents = append(agents, s)
				}
			}
		}
	}
	for _, a := range agents {
		if origin, ok := v.Directory.allowed(a); ok && !v.Directory.Cached(origin) {
			return true
		}
	}
	return false
}
