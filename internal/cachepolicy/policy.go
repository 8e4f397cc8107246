package cachepolicy

import (
	"net/http"
	"strings"
	"time"
)

// Policy holds the operator's settings. The zero value is NOT usable (it disables
// heuristic freshness and the targeted field): start from DefaultPolicy and change fields.
// A Policy is a value: methods never modify it and are safe for concurrent use.
type Policy struct {
	// HeuristicFraction is the share of (Date - Last-Modified) used as the freshness lifetime
	// of a response without explicit expiry (RFC 9111 §4.2.2). Default 0.1, the RFC's
	// suggestion. 0, negative or NaN disables heuristic freshness. Higher values serve
	// changed content longer.
	HeuristicFraction float64
	// MaxHeuristic caps a heuristic lifetime. Default 24h. 0 or negative disables heuristic
	// freshness (such responses are stored only to be revalidated).
	MaxHeuristic time.Duration
	// DefaultTTL is the lifetime given to a 200 response with no freshness information and
	// no Last-Modified. Default 0: such a response is not fresh; it is stored only if it has
	// an ETag, and then revalidated on every use. Risk: a non-zero value serves content the
	// origin never said was cacheable for that long.
	DefaultTTL time.Duration
	// MaxTTL caps every lifetime, explicit or heuristic. 0 (default) means no cap.
	MaxTTL time.Duration
	// TargetedField is the RFC 9213 targeted field consulted before Cache-Control. Default
	// "CDN-Cache-Control"; "" disables targeted fields.
	TargetedField string
	// CacheAuthorized stores responses to requests with Authorization even without public,
	// s-maxage or must-revalidate (RFC 9111 §3.5). Default false. Risk: one user's private
	// response served to another; enable only when the origin keys responses by other means.
	CacheAuthorized bool
	// IgnoreRequestNoCache protects the origin from clients that force refreshes: request
	// no-cache, Pragma: no-cache, max-age, min-fresh and no-store are treated as absent
	// (max-age is included because browsers send max-age=0 on reload). Request directives
	// that only relax (max-stale, stale-if-error) still apply. Default false.
	IgnoreRequestNoCache bool
}

// DefaultPolicy returns the settings rhizome uses unless the operator says otherwise.
func DefaultPolicy() Policy {
	return Policy{
		HeuristicFraction:    0.1,                 // RFC 9111 §4.2.2 suggests 10%
		MaxHeuristic:         24 * time.Hour,      // a day, common CDN practice
		DefaultTTL:           0,                   // no freshness the origin did not give
		MaxTTL:               0,                   // no cap
		TargetedField:        "CDN-Cache-Control", // RFC 9213 §3
		CacheAuthorized:      false,               // §3.5 as written
		IgnoreRequestNoCache: false,               // honour clients, as RFC 9111 says
	}
}

// EffectiveDirectives returns the directives that govern this edge: the targeted field
// (TargetedField, CDN-Cache-Control by default) when it is present and well-formed, else
// Cache-Control. The second result names the field used: TargetedField as configured, or
// "Cache-Control".
//
// Well-formed means (RFC 9213 §2.1: a field with a parsing error is ignored): not empty,
// every member a token with an optional token or quoted-string value, and every
// delta-seconds directive (max-age, s-maxage, stale-while-revalidate, stale-if-error) with
// a valid number. Cache-Control syntax is accepted, not only Structured Fields, because
// that is what origins send.
func (p Policy) EffectiveDirectives(h http.Header) (Directives, string) {
	d, targeted := p.effective(h)
	if targeted {
		return d, p.TargetedField
	}
	return d, "Cache-Control"
}

func (p Policy) effective(h http.Header) (Directives, bool) {
	if p.TargetedField != "" {
		if v := fieldValues(h, p.TargetedField); len(v) > 0 {
			if d, ok := parseDirectives(v); ok {
				return d, true
			}
		}
	}
	return ParseDirectives(fieldValues(h, "Cache-Control")), false
}

// heuristicStatus reports whether a status is heuristically cacheable (RFC 9110 §15.1).
// 206 is left out on purpose: this cache stores complete objects only.
func heuristicStatus(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// Storable says whether a shared cache may store a response (RFC 9111 §3, §3.5). reason is a
// short token for logs and the Cache-Status detail when ok is false; checks run in this
// order and the first that fails names the reason:
//
//   - "method": only GET responses are stored. HEAD is never stored on its own; the proxy
//     fetches GET for a HEAD miss.
//   - "status": 1xx, 206 and 304 are never stored (this cache keeps complete objects only).
//   - "no-store": the effective directives (see EffectiveDirectives) say no-store.
//   - "request-no-store": the request says no-store, unless IgnoreRequestNoCache.
//   - "private": private, qualified or not. A shared cache could store private="f" without
//     field f, but this cache stores whole responses, so it refuses.
//   - "authorization": the request had Authorization and the response has none of public,
//     s-maxage, must-revalidate (§3.5), unless CacheAuthorized.
//   - "vary-star": Vary contains "*"; it could never be reused.
//   - "set-cookie": Set-Cookie without public or s-maxage. The RFC allows storing it, but
//     the proxy strips nothing, and serving one user's cookie to another is the classic CDN
//     leak; Varnish and most CDNs refuse the same way.
//   - "status": a status that is not heuristically cacheable (RFC 9110 §15.1) without
//     explicit freshness (max-age, s-maxage, Expires) or public.
//   - "no-freshness": nothing could ever make it fresh or revalidate it: no explicit expiry,
//     no Last-Modified (so no heuristic), no ETag, and no DefaultTTL for this status
//     (DefaultTTL covers 200 only).
func (p Policy) Storable(method string, reqH http.Header, status int, respH http.Header) (ok bool, reason string) {
	if method != http.MethodGet {
		return false, "method"
	}
	if status < 200 || status > 599 || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false, "status"
	}
	d, targeted := p.effective(respH)
	if d.NoStore {
		return false, "no-store"
	}
	if !p.IgnoreRequestNoCache && ParseRequest(reqH).NoStore {
		return false, "request-no-store"
	}
	if d.Private || len(d.PrivateFields) > 0 {
		return false, "private"
	}
	if hasField(reqH, "Authorization") && !p.CacheAuthorized && !d.Public && !d.HasSMaxAge && !d.MustRevalidate {
		return false, "authorization"
	}
	if varyStar(fieldValues(respH, "Vary")) {
		return false, "vary-star"
	}
	if hasField(respH, "Set-Cookie") && !d.Public && !d.HasSMaxAge {
		return false, "set-cookie"
	}
	explicit := d.HasMaxAge || d.HasSMaxAge || (!targeted && hasField(respH, "Expires"))
	if !explicit && !d.Public && !heuristicStatus(status) {
		return false, "status"
	}
	_, hasLM := httpDate(fieldValues(respH, "Last-Modified"))
	if !explicit && !hasLM && len(storedETags(respH)) == 0 && !(status == http.StatusOK && p.DefaultTTL > 0) {
		return false, "no-freshness"
	}
	return true, ""
}

// varyStar reports whether a Vary field contains "*".
func varyStar(vary []string) bool {
	for _, line := range vary {
		for _, m := range splitNames(line) {
			if m == "*" {
				return true
			}
		}
	}
	return false
}

// httpDate parses the first line of a date field. Later lines are ignored: a field that
// should have one value but has several is most often a proxy's repetition.
func httpDate(values []string) (time.Time, bool) {
	if len(values) == 0 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(strings.TrimSpace(values[0]))
	return t, err == nil
}
