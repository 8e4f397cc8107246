package botauth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// Limits on what a verification will parse. Everything here runs before any key
// is known, so an unauthenticated client controls all of it: each limit bounds
// the CPU and memory one request can cost. Beyond a limit the request is refused
// with ErrInvalid rather than partly considered.
const (
	// maxFieldBytes is the most bytes of Signature-Input, of Signature and of
	// Signature-Agent (each field, all its lines together) that are parsed. A
	// Web Bot Auth request carries a few hundred bytes in each.
	maxFieldBytes = 8 << 10
	// maxSignatures is the most members of Signature-Input (and of Signature)
	// a message may carry: every selected one is verified.
	maxSignatures = 8
	// maxComponents is the most covered components one signature may list.
	maxComponents = 32
)

// fieldBytes is the size of a field's lines together (with the ", " that joins
// them).
func fieldBytes(lines []string) int {
	n := 0
	for i, l := range lines {
		if i > 0 {
			n += 2
		}
		n += len(l)
	}
	return n
}

// rawSignature is one Signature-Input member with its Signature, parsed but not
// yet checked: components are parsed only for the signatures a caller selects, so
// that an unrelated signature using something unsupported does not get in the way.
type rawSignature struct {
	label  string
	list   httpsfv.InnerList
	raw    string // the member's value exactly as received: the @signature-params line
	params Params
	sig    []byte

	comps   []component // parsed by components, at most once
	compErr error
	parsed  bool
}

// components parses the covered components once.
func (rs *rawSignature) components() ([]component, error) {
	if !rs.parsed {
		rs.parsed = true
		rs.comps = make([]component, len(rs.list.Items))
		for i, item := range rs.list.Items {
			c, err := componentFromItem(item)
			if err != nil {
				rs.comps, rs.compErr = nil, err
				break
			}
			rs.comps[i] = c
		}
	}
	return rs.comps, rs.compErr
}

// covers reports whether rs covers the serialised component identifier (false
// when its components do not parse: checkSignature then reports why).
func (rs *rawSignature) covers(ident string) bool {
	comps, _ := rs.components()
	for _, c := range comps {
		if c.ident == ident {
			return true
		}
	}
	return false
}

// parseSignatures parses Signature-Input and Signature (RFC 9421 §4). It returns
// ErrNoSignature when neither is present, ErrInvalid when they are malformed, a
// label appears twice, a Signature-Input member has no signature, or a limit
// (maxFieldBytes, maxSignatures, maxComponents) is exceeded.
func parseSignatures(h http.Header) ([]rawSignature, error) {
	inputs, sigs := h.Values("Signature-Input"), h.Values("Signature")
	if len(inputs) == 0 && len(sigs) == 0 {
		return nil, ErrNoSignature
	}
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: Signature without Signature-Input", ErrInvalid)
	}
	// Size first: nothing below runs on an oversized field.
	if n := fieldBytes(inputs); n > maxFieldBytes {
		return nil, fmt.Errorf("%w: Signature-Input is %d bytes, limit %d", ErrInvalid, n, maxFieldBytes)
	}
	if n := fieldBytes(sigs); n > maxFieldBytes {
		return nil, fmt.Errorf("%w: Signature is %d bytes, limit %d", ErrInvalid, n, maxFieldBytes)
	}
	members, err := splitDictionary(inputs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature-Input: %w", ErrInvalid, err)
	}
	if len(members) > maxSignatures {
		return nil, fmt.Errorf("%w: Signature-Input has %d signatures, limit %d", ErrInvalid, len(members), maxSignatures)
	}
	sigMembers, err := splitDictionary(sigs)
	if err != nil {
		return nil, fmt.Errorf("%w: Signature: %w", ErrInvalid, err)
	}
	if len(sigMembers) > maxSignatures {
		return nil, fmt.Errorf("%w: Signature has %d members, limit %d", ErrInvalid, len(sigMembers), maxSignatures)
	}
	out := make([]rawSignature, 0, len(members))
	for _, m := range members {
		rs := rawSignature{label: m.key, raw: m.raw}
		il, ok := m.value.(httpsfv.InnerList)
		if !ok {
			return nil, fmt.Errorf("%w: signature %s: Signature-Input member is not an inner list", ErrInvalid, m.key)
		}
		if len(il.Items) > maxComponents {
			return nil, fmt.Errorf("%w: signature %s: %d covered components, limit %d", ErrInvalid, m.key, len(il.Items), maxComponents)
		}
		rs.list = il
		if rs.params, err = signatureParams(il.Params); err != nil {
			return nil, fmt.Errorf("%w: signature %s: %w", ErrInvalid, m.key, err)
		}
		for _, s := range sigMembers { // at most maxSignatures
			if s.key == m.key {
				item, ok := s.value.(httpsfv.Item)
				b, isBytes := item.Value.([]byte)
				if !ok || !isBytes {
					return nil, fmt.Errorf("%w: signature %s: Signature member is not a byte sequence", ErrInvalid, m.key)
				}
				rs.sig = b
			}
		}
		if rs.sig == nil {
			return nil, fmt.Errorf("%w: signature %s: no Signature member", ErrInvalid, m.key)
		}
		out = append(out, rs)
	}
	return out, nil
}

// signatureParams reads the parameters this package uses. Other parameters are
// allowed: they are in the received @signature-params line, so they are signed.
func signatureParams(p *httpsfv.Params) (Params, error) {
	var out Params
	if p == nil {
		return out, nil
	}
	for _, name := range p.Names() {
		v, _ := p.Get(name)
		switch name {
		case "created", "expires":
			n, ok := v.(int64)
			if !ok {
				return out, fmt.Errorf("parameter %s is not an integer", name)
			}
			t := time.Unix(n, 0)
			if name == "created" {
				out.Created = t
			} else {
				out.Expires = t
			}
		case "keyid", "alg", "nonce", "tag":
			s, ok := v.(string)
			if !ok {
				return out, fmt.Errorf("parameter %s is not a string", name)
			}
			switch name {
			case "keyid":
				out.KeyID = s
			case "alg":
				out.Alg = s
			case "nonce":
				out.Nonce = s
			default:
				out.Tag = s
			}
		}
	}
	return out, nil
}

// rawMember is one dictionary member: its key, parsed value and raw text.
type rawMember struct {
	key   string
	value httpsfv.Member
	raw   string
}

// splitDictionary parses a dictionary field and also returns each member's value
// text exactly as received, because the verifier must use the signer's own
// serialisation of the signature parameters (RFC 9421 §3.2), not a
// re-serialisation. Duplicate keys, which RFC 9651 would silently collapse to
// the last one, are an error: two signatures under one label are ambiguous.
func splitDictionary(lines []string) ([]rawMember, error) {
	d, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return nil, err
	}
	s := strings.Join(lines, ", ")
	var parts []string
	depth, start := 0, 0
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	names := d.Names()
	out := make([]rawMember, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		p = strings.Trim(p, " \t")
		if p == "" {
			continue
		}
		end := strings.IndexAny(p, "=;")
		key, raw := p, ""
		if end >= 0 {
			key = p[:end]
			if p[end] == '=' {
				raw = p[end+1:]
			}
		}
		if seen[key] {
			return nil, fmt.Errorf("label %q appears twice", key)
		}
		seen[key] = true
		m, ok := d.Get(key)
		if !ok {
			return nil, fmt.Errorf("cannot delimit member %q", key)
		}
		out = append(out, rawMember{key: key, value: m, raw: raw})
	}
	// The split must agree with the parser member for member; if it does not
	// (some syntax the splitter does not know), refuse rather than sign-check
	// text the parser did not read.
	if len(out) != len(names) {
		return nil, errors.New("cannot delimit members")
	}
	for i := range out {
		if out[i].key != names[i] {
			return nil, errors.New("cannot delimit members")
		}
		if il, ok := out[i].value.(httpsfv.InnerList); ok {
			again, err := httpsfv.UnmarshalDictionary([]string{out[i].key + "=" + out[i].raw})
			if err != nil {
				return nil, fmt.Errorf("member %q: %w", out[i].key, err)
			}
			v, _ := again.Get(out[i].key)
			a, err1 := httpsfv.Marshal(v)
			b, err2 := httpsfv.Marshal(il)
			if err1 != nil || err2 != nil || a != b {
				return nil, fmt.Errorf("member %q: cannot delimit", out[i].key)
			}
		}
	}
	return out, nil
}

// checkOpts are the policy knobs of one verification.
type checkOpts struct {
	skew         time.Duration // allowed clock skew on created
	maxValidity  time.Duration // expires-created at most; 0 = no limit
	requireTimes bool          // created and expires must be present
}

// defaultSkew is the clock skew VerifyRequest tolerates on created.
const defaultSkew = time.Minute

// checkSignature verifies one signature of m: parameters and validity window
// first and the signature base next, so that a stale or malformed signature
// never costs a key lookup (which may fetch a directory), then the key and the
// Ed25519 signature.
func checkSignature(m message, rs *rawSignature, lookup func(keyid string) (ed25519.PublicKey, error), now time.Time, o checkOpts) (Signed, error) {
	p := rs.params
	fail := func(kind error, format string, args ...any) (Signed, error) {
		return Signed{}, fmt.Errorf("signature %s: %s: %w", rs.label, fmt.Sprintf(format, args...), kind)
	}
	if p.Alg != "" && p.Alg != "ed25519" {
		return fail(ErrInvalid, "unsupported alg %q", p.Alg)
	}
	if o.requireTimes && (p.Created.IsZero() || p.Expires.IsZero()) {
		return fail(ErrInvalid, "created and expires are required")
	}
	if !p.Created.IsZero() && !p.Expires.IsZero() {
		if p.Expires.Before(p.Created) {
			return fail(ErrInvalid, "expires before created")
		}
		if o.maxValidity > 0 && p.Expires.Sub(p.Created) > o.maxValidity {
			return fail(ErrInvalid, "validity %s exceeds %s", p.Expires.Sub(p.Created), o.maxValidity)
		}
	}
	if !p.Expires.IsZero() && now.After(p.Expires) {
		return fail(ErrExpired, "expired at %d", p.Expires.Unix())
	}
	if !p.Created.IsZero() && now.Before(p.Created.Add(-o.skew)) {
		return fail(ErrExpired, "created %d is in the future", p.Created.Unix())
	}
	if p.KeyID == "" {
		return fail(ErrInvalid, "no keyid")
	}
	if len(rs.sig) != ed25519.SignatureSize {
		return fail(ErrInvalid, "signature is %d bytes, want %d", len(rs.sig), ed25519.SignatureSize)
	}
	comps, err := rs.components()
	if err != nil {
		return fail(ErrInvalid, "%v", err)
	}
	short := make([]string, len(comps))
	for i, c := range comps {
		short[i] = c.short()
	}
	base, err := buildBase(m, comps, rs.raw)
	if err != nil {
		return Signed{}, fmt.Errorf("signature %s: %w", rs.label, err)
	}
	pub, err := lookup(p.KeyID)
	if err != nil {
		return Signed{}, fmt.Errorf("signature %s: key %q: %w", rs.label, p.KeyID, err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fail(ErrInvalid, "key %q is %d bytes, want %d", p.KeyID, len(pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(pub, base, rs.sig) {
		return fail(ErrInvalid, "does not verify with key %q", p.KeyID)
	}
	return Signed{Label: rs.label, Components: short, Params: p}, nil
}

// VerifyRequest parses Signature-Input and Signature and verifies every
// signature whose tag equals tag (every signature when tag is ""), with key
// lookup by keyid; it returns the first of them. All selected signatures must
// verify: one failing is an error even if another passes. Returns ErrNoSignature
// when the request carries none (or none with that tag).
//
// Expires is enforced and created may be at most a minute in the future; callers
// wanting more policy (required times, maximum validity) use Verifier. Lookup
// errors are wrapped as they are, so lookup should return ErrUnknownKey for a key
// it does not know.
func VerifyRequest(r *http.Request, tag string, lookup func(keyid string) (ed25519.PublicKey, error), now time.Time) (Signed, error) {
	return verifySelected(r, func(rs *rawSignature) bool { return tag == "" || rs.params.Tag == tag }, fmt.Sprintf("tagged %q", tag), lookup, now)
}

// VerifyRequestLabel is VerifyRequest for the one signature with the given label
// (RFC 9421 signatures are addressed by label; Web Bot Auth selects by tag).
func VerifyRequestLabel(r *http.Request, label string, lookup func(keyid string) (ed25519.PublicKey, error), now time.Time) (Signed, error) {
	return verifySelected(r, func(rs *rawSignature) bool { return rs.label == label }, fmt.Sprintf("labelled %q", label), lookup, now)
}

func verifySelected(r *http.Request, want func(*rawSignature) bool, what string, lookup func(keyid string) (ed25519.PublicKey, error), now time.Time) (Signed, error) {
	if r == nil {
		return Signed{}, ErrNoSignature
	}
	if lookup == nil {
		lookup = func(string) (ed25519.PublicKey, error) { return nil, ErrUnknownKey }
	}
	all, err := parseSignatures(r.Header)
	if err != nil {
		return Signed{}, err
	}
	var first Signed
	n := 0
	for i := range all {
		rs := &all[i]
		if !want(rs) {
			continue
		}
		s, err := checkSignature(message{req: r}, rs, lookup, now, checkOpts{skew: defaultSkew})
		if err != nil {
			return Signed{}, err
		}
		if n == 0 {
			first = s
		}
		n++
	}
	if n == 0 {
		return Signed{}, fmt.Errorf("no signature %s: %w", what, ErrNoSignature)
	}
	return first, nil
}
