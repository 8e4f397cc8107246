package cachepolicy

import (
	"math"
	"net/http"
	"time"
)

// Stored is what the cache knows about a stored response. The package only reads it.
type Stored struct {
	Status int
	// Header is the response header as received (Date, Age, Expires, Cache-Control,
	// ETag...), updated by Merge304 after a revalidation.
	Header http.Header
	// RequestTime is when the request that got the response was sent; zero when unknown.
	RequestTime time.Time
	// ResponseTime is when the response was received. It must be set: CurrentAge counts
	// resident time from it. After a 304 the caller sets both times to the revalidation's.
	ResponseTime time.Time
}

// Lifetime is the freshness lifetime of a stored response (RFC 9111 §4.2.1), capped by
// MaxTTL. In order: the targeted field's (CDN-Cache-Control) s-maxage or max-age when that
// field governs, else Cache-Control's s-maxage, then max-age, then Expires - Date (Date
// missing or invalid -> ResponseTime; Expires invalid, or repeated with differing values ->
// already expired). Without any of these, a heuristic applies to heuristically cacheable
// statuses and to public responses (§4.2.2): HeuristicFraction of (Date - Last-Modified),
// capped by MaxHeuristic, or DefaultTTL for a 200 without Last-Modified. The second result
// is true when the lifetime is such a guess rather than the origin's word.
func (p Policy) Lifetime(st *Stored) (time.Duration, bool) {
	if st == nil {
		return 0, false
	}
	d, targeted := p.effective(st.Header)
	lt, heuristic := p.lifetime(st, d, targeted)
	if p.MaxTTL > 0 && lt > p.MaxTTL {
		lt = p.MaxTTL
	}
	return lt, heuristic
}

func (p Policy) lifetime(st *Stored, d Directives, targeted bool) (time.Duration, bool) {
	switch {
	case d.HasSMaxAge:
		return d.SMaxAge, false
	case d.HasMaxAge:
		return d.MaxAge, false
	}
	date := responseDate(st)
	// RFC 9213 §2.2: a cache using the targeted field ignores Expires as well.
	if exp := fieldValues(st.Header, "Expires"); !targeted && len(exp) > 0 {
		t, ok := httpDate(exp)
		for _, v := range exp[1:] {
			if v != exp[0] {
				ok = false
			}
		}
		if !ok {
			return 0, false
		}
		return clampDelta(t.Sub(date)), false
	}
	if !heuristicStatus(st.Status) && !d.Public {
		return 0, false
	}
	if lm, ok := httpDate(fieldValues(st.Header, "Last-Modified")); ok {
		return p.heuristic(date.Sub(lm)), true
	}
	if st.Status == http.StatusOK && p.DefaultTTL > 0 {
		return p.DefaultTTL, true
	}
	return 0, false
}

// heuristic is the §4.2.2 guess for a response last modified since ago before its Date.
func (p Policy) heuristic(since time.Duration) time.Duration {
	f := p.HeuristicFraction
	if since <= 0 || p.MaxHeuristic <= 0 || !(f > 0) || math.IsInf(f, 0) {
		return 0
	}
	lt := float64(since) * f
	if limit := float64(min(p.MaxHeuristic, maxDelta)); lt > limit {
		lt = limit
	}
	return time.Duration(lt)
}

// responseDate is the Date of a stored response, or ResponseTime when Date is missing or
// invalid (RFC 9111 §4.2.3 lets a cache take the time it received the response).
func responseDate(st *Stored) time.Time {
	if t, ok := httpDate(fieldValues(st.Header, "Date")); ok {
		return t
	}
	return st.ResponseTime
}

func clampDelta(d time.Duration) time.Duration {
	return max(0, min(d, maxDelta))
}

// satAdd adds two non-negative durations, saturating instead of overflowing.
func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// CurrentAge is the current age of a stored response at now, computed exactly as RFC 9111
// §4.2.3 says:
//
//	apparent_age          = max(0, response_time - date_value)
//	response_delay        = response_time - request_time
//	corrected_age_value   = age_value + response_delay
//	corrected_initial_age = max(apparent_age, corrected_age_value)
//	resident_time         = now - response_time
//	current_age           = corrected_initial_age + resident_time
//
// A missing or invalid Age counts as 0 and an invalid Date as ResponseTime. Negative
// intervals from clock skew count as 0 (also a zero RequestTime: the delay is unknown), and
// the sum saturates rather than overflows.
func CurrentAge(st *Stored, now time.Time) time.Duration {
	if st == nil {
		return 0
	}
	var ageValue time.Duration
	if v := fieldValues(st.Header, "Age"); len(v) > 0 {
		ageValue, _ = parseDelta(trimOWS(v[0]))
	}
	apparent := max(0, st.ResponseTime.Sub(responseDate(st)))
	var delay time.Duration
	if !st.RequestTime.IsZero() {
		delay = max(0, st.ResponseTime.Sub(st.RequestTime))
	}
	corrected := max(apparent, satAdd(ageValue, delay))
	resident := max(0, now.Sub(st.ResponseTime))
	return satAdd(corrected, resident)
}

// Action is what the proxy must do with a stored response. Append only: values are stable
// and may be logged or compared across versions.
type Action int

const (
	// Fresh: serve the stored response as it is.
	Fresh Action = iota
	// StaleRevalidate: serve it now and revalidate in the background (RFC 5861 §3,
	// stale-while-revalidate).
	StaleRevalidate
	// Revalidate: validate with the origin before use (stale, no-cache, must-revalidate,
	// request no-cache or max-age...). If that fails, Decision.CanStaleIfError says whether
	// the stored response may still be served.
	Revalidate
	// Unusable: must not be served at all. Decide returns it for a nil *Stored and for a
	// stored response whose effective directives say no-store or private, which should never
	// have been stored (the policy or the targeted field changed since). Vary mismatches are
	// the caller's (VaryKey); request no-store and only-if-cached are not this.
	Unusable
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Age is the current age, for the Age header.
	Age      time.Duration
	Lifetime time.Duration
	// TTL is Lifetime - Age, negative when stale: for Cache-Status ttl=.
	TTL   time.Duration
	Stale bool
	// CanStaleIfError says whether the response may be served if revalidation fails with a
	// 5xx or a connection error (RFC 5861 §4): the response's or the request's
	// stale-if-error window (the wider of the two) covers its staleness, and the response
	// has none of must-revalidate, proxy-revalidate, s-maxage, no-cache (RFC 9111 §4.2.4).
	// The operator's always-online window is StaleIfErrorOK's business.
	CanStaleIfError bool
	// Reason is a short token for logs: "fresh", "immutable", "max-stale",
	// "stale-while-revalidate", "stale", "no-cache", "must-revalidate", "proxy-revalidate",
	// "s-maxage", "request-no-cache", "request-max-age", "min-fresh", "no-store", "private",
	// "no-response".
	Reason string
}

// Decide says what to do with a stored response for a request at now: it applies
// freshness (RFC 9111 §4.2), the request directives max-age, max-stale, min-fresh and
// no-cache (§5.2.1; the revalidating ones are skipped under IgnoreRequestNoCache), the rules
// on serving stale (§4.2.4) and RFC 5861.
//
// Order: response no-cache (qualified or not) -> Revalidate. Request no-cache, a request
// max-age below the age, or a min-fresh the remaining TTL does not meet -> Revalidate;
// except that no-cache and max-age do not force revalidating a fresh immutable response
// (RFC 8246: it will not change while fresh). Fresh -> Fresh. Stale with must-revalidate,
// proxy-revalidate -> Revalidate. Stale by at most stale-while-revalidate ->
// StaleRevalidate (even with s-maxage: an explicit window from the origin wins over the
// revalidation s-maxage implies, §5.2.2.10, as at the large CDNs). Stale with s-maxage ->
// Revalidate.
// Stale within the request's max-stale -> Fresh with Stale set (the client accepted it; no
// background revalidation). Otherwise Revalidate.
func (p Policy) Decide(reqH http.Header, st *Stored, now time.Time) Decision {
	if st == nil {
		return Decision{Action: Unusable, Reason: "no-response"}
	}
	return p.Prepare(st).Decide(reqH, now)
}

// Prepared is what Decide derives from a stored response alone: its effective directives,
// freshness lifetime and corrected initial age (RFC 9111 §4.2.3). A cache that keeps one per
// stored response answers hits without parsing any stored header. It is immutable and valid
// only for the Policy and the exact stored response it was made from: a 304 merge or a new
// policy needs a new one (Policy reports which policy made it).
type Prepared struct {
	policy       Policy
	d            Directives
	forbid       string
	lifetime     time.Duration
	initialAge   time.Duration
	responseTime time.Time
}

// Prepare parses st once for repeated Decide calls. st must not be nil.
func (p Policy) Prepare(st *Stored) *Prepared {
	d, _ := p.effective(st.Header)
	lifetime, _ := p.Lifetime(st)
	return &Prepared{
		policy:       p,
		d:            d,
		forbid:       staleForbidden(d),
		lifetime:     lifetime,
		initialAge:   CurrentAge(st, st.ResponseTime),
		responseTime: st.ResponseTime,
	}
}

// Policy returns the policy that made pr.
func (pr *Prepared) Policy() Policy { return pr.policy }

// Decide is Policy.Decide for the stored response pr was prepared from.
func (pr *Prepared) Decide(reqH http.Header, now time.Time) Decision {
	d, forbid, lifetime := pr.d, pr.forbid, pr.lifetime
	age := satAdd(pr.initialAge, max(0, now.Sub(pr.responseTime)))
	ttl := lifetime - age
	dec := Decision{Age: age, Lifetime: lifetime, TTL: ttl, Stale: ttl <= 0}
	staleness := max(0, -ttl)
	rd := pr.policy.request(reqH)
	// s-maxage implies proxy-revalidate (§5.2.2.10), yet origins that send it together with
	// stale-while-revalidate or stale-if-error (Next.js, Vercel) mean those windows, and the
	// large CDNs honour them: an explicit window from the response wins over the implied
	// revalidation, while implicit staleness (max-stale, always-online) stays forbidden.
	dec.CanStaleIfError = forbid == "" && withinStaleIfError(d, rd, staleness) ||
		forbid == "s-maxage" && d.HasSIE && staleness <= d.StaleIfError

	verdict := func(a Action, reason string) Decision {
		dec.Action, dec.Reason = a, reason
		return dec
	}
	switch {
	case d.NoStore:
		return verdict(Unusable, "no-store")
	case d.Private || len(d.PrivateFields) > 0:
		return verdict(Unusable, "private")
	case d.NoCache || len(d.NoCacheFields) > 0:
		return verdict(Revalidate, "no-cache")
	}
	pinned := !dec.Stale && d.Immutable
	switch {
	case rd.NoCache && !pinned:
		return verdict(Revalidate, "request-no-cache")
	case rd.HasMaxAge && age > rd.MaxAge && !pinned:
		return verdict(Revalidate, "request-max-age")
	case rd.HasMinFresh && !dec.Stale && ttl < rd.MinFresh:
		return verdict(Revalidate, "min-fresh")
	case pinned && (rd.NoCache || (rd.HasMaxAge && age > rd.MaxAge)):
		return verdict(Fresh, "immutable")
	case !dec.Stale:
		return verdict(Fresh, "fresh")
	case forbid != "" && forbid != "s-maxage":
		return verdict(Revalidate, forbid)
	case d.StaleWhileRevalidate > 0 && staleness <= d.StaleWhileRevalidate:
		return verdict(StaleRevalidate, "stale-while-revalidate")
	case forbid != "":
		return verdict(Revalidate, forbid)
	case rd.MaxStaleAny || (rd.HasMaxStale && staleness <= rd.MaxStale):
		return verdict(Fresh, "max-stale")
	}
	return verdict(Revalidate, "stale")
}

// request parses the request directives, dropping the ones IgnoreRequestNoCache removes.
func (p Policy) request(reqH http.Header) RequestDirectives {
	rd := ParseRequest(reqH)
	if p.IgnoreRequestNoCache {
		rd.NoCache, rd.NoStore = false, false
		rd.MaxAge, rd.HasMaxAge = 0, false
		rd.MinFresh, rd.HasMinFresh = 0, false
	}
	return rd
}

// staleForbidden names the response directive that forbids serving it stale (RFC 9111
// §4.2.4), or returns "".
func staleForbidden(d Directives) string {
	switch {
	case d.MustRevalidate:
		return "must-revalidate"
	case d.ProxyRevalidate:
		return "proxy-revalidate"
	case d.HasSMaxAge:
		return "s-maxage"
	case d.NoCache || len(d.NoCacheFields) > 0:
		return "no-cache"
	}
	return ""
}

// withinStaleIfError reports whether a stale-if-error window, the response's or the
// request's, covers the staleness. Either side may grant it (RFC 5861 §4).
func withinStaleIfError(d Directives, rd RequestDirectives, staleness time.Duration) bool {
	return (d.HasSIE && staleness <= d.StaleIfError) || (rd.HasSIE && staleness <= rd.StaleIfError)
}

// StaleIfErrorOK reports whether a stored response may be served at now because the origin
// failed (5xx or unreachable). It may when the response is still fresh, or when its
// staleness is within the response's or the request's stale-if-error, the request's
// max-stale, or extra: the operator's always-online window (serve any stale object up to
// extra past expiry even without stale-if-error; 0 = none).
//
// Never for a response that is Unusable or has no-cache (which needs validation for every
// use, fresh or not), and never, once stale, for one with must-revalidate or
// proxy-revalidate; with s-maxage only the response's own stale-if-error window counts:
// RFC 9111 §4.2.4 forbids serving those stale otherwise, and the operator window does
// not override it (unlike Cloudflare's Always Online). An origin that wants always-online
// for such content sends a CDN-Cache-Control without those directives.
func (p Policy) StaleIfErrorOK(reqH http.Header, st *Stored, now time.Time, extra time.Duration) bool {
	if st == nil {
		return false
	}
	d, _ := p.effective(st.Header)
	if d.NoStore || d.Private || len(d.PrivateFields) > 0 || d.NoCache || len(d.NoCacheFields) > 0 {
		return false
	}
	lifetime, _ := p.Lifetime(st)
	staleness := CurrentAge(st, now) - lifetime
	if staleness <= 0 {
		return true
	}
	switch staleForbidden(d) {
	case "":
	case "s-maxage":
		return d.HasSIE && staleness <= d.StaleIfError // see Decide: explicit windows win
	default:
		return false
	}
	rd := ParseRequest(reqH)
	return staleness <= extra || withinStaleIfError(d, rd, staleness) ||
		rd.MaxStaleAny || (rd.HasMaxStale && staleness <= rd.MaxStale)
}
