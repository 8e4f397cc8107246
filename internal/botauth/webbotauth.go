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
	// Agent is the Signature-Agent of the verified signature in NormalizeAgent's
	// form "https://host[:port]" (the same form DirectoryOptions.Allowed gets).
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
	// MaxValidity is the longest expires-created accepted (default 5 min).
	// There is no nonce database, so a captured request verifies again, for
	// whatever its signature covers, until it expires: this bounds that replay
	// window. Crawlers sign with an expiry of about a minute; raise it only for
	// crawlers known to need more.
	MaxValidity time.Duration
	// Skew is how far in the future created may be (default 1 min).
	Skew time.Duration
}

const (
	defaultMaxValidity = 5 * time.Minute
	defaultVerifySkew  = time.Minute
)

// Verify checks r as Web Bot Auth (draft-meunier-web-bot-auth-architecture).
// Every signature tagged "web-bot-auth" must verify; the identity is the first's
// (in Signature-Input order), with the agent of that signature.
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
// signature never triggers a directory fetch; the parsing limits (see the
// package documentation) keep their cost bounded.
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
	var (
		id     Identity
		n      int
		agents *agentField // Signature-Agent, parsed once when first needed
	)
	for i := range all {
		rs := &all[i]
		if rs.params.Tag != Tag {
			continue
		}
		// Policy checks that need no key come before checkSignature, which may
		// fetch a directory.
		if !rs.covers(`"@authority"`) {
			if _, err := rs.components(); err != nil {
				return Identity{}, fmt.Errorf("signature %s: %v: %w", rs.label, err, ErrInvalid)
			}
			return Identity{}, fmt.Errorf("signature %s: @authority not covered: %w", rs.label, ErrInvalid)
		}
		if agents == nil {
			f := parseAgentField(r.Header["Signature-Agent"])
			agents = &f
		}
		agent, err := signatureAgent(agents, rs)
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

// agentField is the Signature-Agent header parsed once: a structured-field
// string (the architecture draft), or a dictionary of strings keyed by signature
// label (later drafts).
type agentField struct {
	present bool
	item    httpsfv.Item        // when the field parses as an item
	dict    *httpsfv.Dictionary // else when it parses as a dictionary
	err     error               // neither, or over maxFieldBytes
}

// parseAgentField parses Signature-Agent's lines (read from the header map
// directly: no allocation when absent).
func parseAgentField(lines []string) agentField {
	if len(lines) == 0 {
		return agentField{}
	}
	f := agentField{present: true}
	if n := fieldBytes(lines); n > maxFieldBytes {
		f.err = fmt.Errorf("%d bytes, limit %d", n, maxFieldBytes)
		return f
	}
	item, err := httpsfv.UnmarshalItem(lines)
	if err == nil {
		f.item = item
		return f
	}
	d, derr := httpsfv.UnmarshalDictionary(lines)
	if derr != nil {
		f.err = fmt.Errorf("not a structured-field string: %v", err)
		return f
	}
	f.dict = d
	return f
}

// claimed lists, in order, the strings the field names: the item, or every
// dictionary member that is a string (at most maxSignatures of them).
func (f *agentField) claimed(yield func(key, agent string) bool) {
	switch {
	case !f.present || f.err != nil:
	case f.dict == nil:
		if s, ok := f.item.Value.(string); ok {
			yield("", s)
		}
	default:
		for i, k := range f.dict.Names() {
			if i == maxSignatures {
				return
			}
			m, _ := f.dict.Get(k)
			if item, ok := m.(httpsfv.Item); ok {
				if s, ok := item.Value.(string); ok && !yield(k, s) {
					return
				}
			}
		}
	}
}

// signatureAgent returns the normalised Signature-Agent for signature rs, "" when
// the request has none. The header must be covered by rs: otherwise anyone could
// swap in a directory of their own. In the dictionary form the member is the one
// keyed by rs's label (or the only member, when there is one), so the agent is
// that of the signature being verified.
func signatureAgent(f *agentField, rs *rawSignature) (string, error) {
	if !f.present {
		return "", nil
	}
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("signature %s: Signature-Agent: %s: %w", rs.label, fmt.Sprintf(format, args...), ErrInvalid)
	}
	if f.err != nil {
		return fail("%v", f.err)
	}
	whole := rs.covers(`"signature-agent"`) || rs.covers(`"signature-agent";sf`)
	var agent string
	if f.dict == nil {
		s, ok := f.item.Value.(string)
		if !ok {
			return fail("not a string")
		}
		if !whole {
			return fail("not covered by the signature")
		}
		agent = s
	} else {
		key := rs.label
		m, ok := f.dict.Get(key)
		if names := f.dict.Names(); !ok && len(names) == 1 {
			key = names[0]
			m, ok = f.dict.Get(key)
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
		if !whole && !rs.covers(keyIdent) {
			return fail("not covered by the signature")
		}
		agent = s
	}
	origin, err := NormalizeAgent(agent)
	if err != nil {
		return fail("%v", err)
	}
	return origin, nil
}

func keyParams(key string) *httpsfv.Params {
	p := httpsfv.NewParams()
	p.Add("key", key)
	return p
}

// ClaimedAgent returns the agent r's Signature-Agent names, in NormalizeAgent's
// form, without verifying anything: the structured-field string, or the first
// member of the dictionary form. It is a claim, for the bot stage to find the
// listed crawler a request says it is (to count a failed verification against
// it, or to decide whether to verify at all); only Verify's Identity.Agent is
// proof. False when the header is absent, malformed, larger than the parsing
// limit, or does not name a valid https origin. Cheap; no allocation when the
// header is absent.
func ClaimedAgent(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	lines := r.Header["Signature-Agent"] // canonical key: no allocation
	if len(lines) == 0 {
		return "", false
	}
	f := parseAgentField(lines)
	if f.err != nil {
		return "", false
	}
	item := f.item
	if f.dict != nil {
		names := f.dict.Names()
		if len(names) == 0 {
			return "", false
		}
		m, _ := f.dict.Get(names[0])
		var ok bool
		if item, ok = m.(httpsfv.Item); !ok {
			return "", false
		}
	}
	agent, ok := item.Value.(string)
	if !ok {
		return "", false
	}
	origin, err := NormalizeAgent(agent)
	if err != nil {
		return "", false
	}
	return origin, true
}

// NeedsFetch reports whether verifying r would fetch a key directory (its
// Signature-Agent is allowed and not cached, fresh or negatively): a caller can
// tell a request that may wait on the network from one that will not. Cheap; no
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
	f := parseAgentField(lines)
	need := false
	f.claimed(func(_, a string) bool {
		if origin, ok := v.Directory.allowed(a); ok && !v.Directory.Cached(origin) {
			need = true
		}
		return !need
	})
	return need
}
