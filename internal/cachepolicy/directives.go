package cachepolicy

import (
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// maxDelta is the largest delta-seconds this package represents: RFC 9111 §1.2.2 lets a
// cache treat any larger value as 2^31 seconds, which also keeps sums of durations far from
// overflowing.
const maxDelta = time.Duration(1<<31) * time.Second

// Directives are parsed Cache-Control (or CDN-Cache-Control) response directives.
//
// Durations are whole seconds in [0, 2^31 s]. A Has* field says whether the directive was
// present; the duration beside it is meaningful only then.
type Directives struct {
	// MaxAge and SMaxAge are 0 when the directive was present but invalid or duplicated
	// with differing values: RFC 9111 §4.2.1 lets such a response be considered stale.
	MaxAge, SMaxAge       time.Duration
	HasMaxAge, HasSMaxAge bool
	// NoCache and Private are set by the unqualified forms only; the qualified forms fill
	// NoCacheFields and PrivateFields instead. Policy treats either form the same way.
	NoStore, NoCache, Private, Public bool
	// NoCacheFields and PrivateFields hold the field names of no-cache="..." and
	// private="...", canonicalised (Set-Cookie) and deduplicated, in order of appearance.
	NoCacheFields, PrivateFields    []string
	MustRevalidate, ProxyRevalidate bool
	Immutable, NoTransform          bool
	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows; an invalid value is
	// ignored and duplicates keep the smaller window.
	StaleWhileRevalidate, StaleIfError time.Duration
	HasSWR, HasSIE                     bool
}

// ParseDirectives parses all field lines of a Cache-Control (or CDN-Cache-Control) response
// header. It is tolerant, like browsers and CDNs: directive names are case-insensitive,
// values may be quoted or bare, unknown directives and malformed members are skipped.
//
// A max-age or s-maxage that is invalid (missing, negative, non-numeric) or repeated with a
// different value yields a present directive with value 0, the most restrictive reading of
// RFC 9111 §4.2.1; repeats with the same value are harmless. Values above 2^31 seconds
// saturate (§1.2.2). It never panics.
func ParseDirectives(values []string) Directives {
	d, _ := parseDirectives(values)
	return d
}

// deltaDirective accumulates every occurrence of max-age or s-maxage, so that conflicting
// duplicates can be told from harmless repeats.
type deltaDirective struct {
	set, conflict bool
	v             time.Duration
}

func (x *deltaDirective) add(v time.Duration, ok bool) {
	if !ok || (x.set && x.v != v) {
		x.conflict = true
	}
	x.set, x.v = true, v
}

func (x *deltaDirective) value() (time.Duration, bool) {
	if x.conflict {
		return 0, x.set
	}
	return x.v, x.set
}

// window keeps the smaller of repeated RFC 5861 windows: the narrower permission is the one
// both readings agree on.
func window(cur *time.Duration, has *bool, v time.Duration, ok bool) {
	if !ok {
		return
	}
	if !*has || v < *cur {
		*cur = v
	}
	*has = true
}

// parseDirectives also reports whether the field was well-formed: at least one member, every
// member a token with an optional token or quoted-string value, and every delta-seconds
// directive with a valid number. RFC 9213 §2.1 tells a cache to ignore a targeted field that
// is not, and fall back to Cache-Control.
func parseDirectives(values []string) (Directives, bool) {
	var d Directives
	var maxAge, sMaxAge deltaDirective
	valid, members := true, 0
	for _, line := range values {
		for _, m := range splitList(line) {
			name, val, hasVal, ok := splitMember(m)
			if !isToken(name) {
				valid = false
				continue
			}
			members++
			if !ok {
				valid = false
			}
			switch name {
			case "max-age":
				v, ok := parseDelta(val)
				ok = ok && hasVal
				valid = valid && ok
				maxAge.add(v, ok)
			case "s-maxage":
				v, ok := parseDelta(val)
				ok = ok && hasVal
				valid = valid && ok
				sMaxAge.add(v, ok)
			case "stale-while-revalidate":
				v, ok := parseDelta(val)
				ok = ok && hasVal
				valid = valid && ok
				window(&d.StaleWhileRevalidate, &d.HasSWR, v, ok)
			case "stale-if-error":
				v, ok := parseDelta(val)
				ok = ok && hasVal
				valid = valid && ok
				window(&d.StaleIfError, &d.HasSIE, v, ok)
			case "no-store":
				d.NoStore = true
			case "no-cache":
				if fields := fieldNames(val); hasVal && len(fields) > 0 {
					d.NoCacheFields = appendNew(d.NoCacheFields, fields)
				} else {
					d.NoCache = true
				}
			case "private":
				if fields := fieldNames(val); hasVal && len(fields) > 0 {
					d.PrivateFields = appendNew(d.PrivateFields, fields)
				} else {
					d.Private = true
				}
			case "public":
				d.Public = true
			case "must-revalidate":
				d.MustRevalidate = true
			case "proxy-revalidate":
				d.ProxyRevalidate = true
			case "immutable":
				d.Immutable = true
			case "no-transform":
				d.NoTransform = true
			}
		}
	}
	d.MaxAge, d.HasMaxAge = maxAge.value()
	d.SMaxAge, d.HasSMaxAge = sMaxAge.value()
	return d, valid && members > 0
}

// splitList splits one field line at the commas that separate list members (RFC 9110
// §5.6.1), leaving commas inside quoted strings alone. Members are trimmed; empty ones are
// dropped, as the list syntax allows.
func splitList(s string) []string {
	var out []string
	start, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			out = appendTrimmed(out, s[start:i])
			start = i + 1
		}
	}
	return appendTrimmed(out, s[start:])
}

func appendTrimmed(out []string, s string) []string {
	if s = strings.Trim(s, " \t"); s != "" {
		out = append(out, s)
	}
	return out
}

// splitMember splits a directive into its lowercased name and its value, unquoted when it
// was a quoted string. ok is false when the value is neither a token nor a well-formed
// quoted string; the value is then a best-effort reading.
func splitMember(m string) (name, val string, hasVal, ok bool) {
	name, val, hasVal = strings.Cut(m, "=")
	name = strings.ToLower(strings.Trim(name, " \t"))
	if !hasVal {
		return name, "", false, true
	}
	val = strings.Trim(val, " \t")
	if strings.HasPrefix(val, `"`) {
		val, ok = unquote(val)
		return name, val, true, ok
	}
	return name, val, true, isToken(val)
}

// unquote reads the quoted string that s starts with. ok is false when it is unterminated
// or followed by anything.
func unquote(s string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), strings.Trim(s[i+1:], " \t") == ""
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), false
}

// parseDelta reads delta-seconds (RFC 9111 §1.2.2): digits only, no sign, saturating at
// 2^31 seconds. Quotes around it are accepted because recipients should accept both forms
// (§5.2).
func parseDelta(s string) (time.Duration, bool) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, 1<<31)) * time.Second, true
}

// fieldNames reads the field-name list of a qualified no-cache or private directive.
func fieldNames(s string) []string {
	var out []string
	for _, n := range splitList(s) {
		if isToken(n) {
			out = append(out, textproto.CanonicalMIMEHeaderKey(n))
		}
	}
	return out
}

func appendNew(list, add []string) []string {
	for _, a := range add {
		if !contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// fieldValues returns the lines of a header field. Keys must be in canonical form, as
// net/http makes them: the lookup is on the hit path of every request, and scanning the map
// for other spellings of absent fields cost more than the rest of the freshness decision.
func fieldValues(h http.Header, name string) []string {
	return h[textproto.CanonicalMIMEHeaderKey(name)]
}

// hasField reports whether the header has at least one line of the field.
func hasField(h http.Header, name string) bool {
	return len(fieldValues(h, name)) > 0
}

// trimOWS trims optional whitespace (RFC 9110 §5.6.3).
func trimOWS(s string) string { return strings.Trim(s, " \t") }
