package cachepolicy

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// entityTag is a parsed entity-tag (RFC 9110 §8.8.3).
type entityTag struct {
	weak   bool
	opaque string
}

// parseETag reads one entity-tag. It also accepts a bare token without quotes, which some
// origins send: refusing it would only make those responses impossible to revalidate.
func parseETag(s string) (entityTag, bool) {
	s = trimOWS(s)
	weak := strings.HasPrefix(s, "W/")
	if weak {
		s = s[2:]
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		opaque := s[1 : len(s)-1]
		return entityTag{weak, opaque}, !strings.Contains(opaque, `"`)
	}
	if s == "" || strings.ContainsAny(s, "\" \t,") {
		return entityTag{}, false
	}
	return entityTag{weak, s}, true
}

// matches compares two entity-tags: weak comparison looks at the opaque tags only, strong
// comparison also needs both to be strong (RFC 9110 §8.8.3.2).
func (a entityTag) matches(b entityTag, strong bool) bool {
	return a.opaque == b.opaque && (!strong || (!a.weak && !b.weak))
}

// storedETags returns every valid entity-tag of a stored response. There should be one, but
// a response may carry several lines; a conditional matching any of them is honoured.
func storedETags(h http.Header) []entityTag {
	var tags []entityTag
	for _, line := range fieldValues(h, "ETag") {
		for _, m := range splitList(line) {
			if t, ok := parseETag(m); ok {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// matchList evaluates an If-Match or If-None-Match list against the stored tags. "*" matches
// any stored response.
func matchList(values []string, tags []entityTag, strong bool) bool {
	for _, line := range values {
		for _, m := range splitList(line) {
			if m == "*" {
				return true
			}
			t, ok := parseETag(m)
			if !ok {
				continue
			}
			for _, s := range tags {
				if t.matches(s, strong) {
					return true
				}
			}
		}
	}
	return false
}

// singleDate reads a date precondition, which RFC 9110 §13.1.3 and §13.1.4 say to ignore
// unless it is exactly one valid HTTP-date. Dates contain a comma, so "one member" is
// checked as "one line that parses".
func singleDate(values []string) (time.Time, bool) {
	if len(values) != 1 {
		return time.Time{}, false
	}
	return httpDate(values)
}

// NotModified evaluates a client's conditional GET or HEAD against a stored response
// (RFC 9110 §13.2.2 order). True means: answer 304.
//
// If-Match (strong comparison) and If-Unmodified-Since are evaluated first; when they fail
// the right answer is 412, which is not this function's: it returns false and the caller
// forwards or serves in full. Then If-None-Match, with weak comparison, lists and "*"
// (§13.1.2); only without If-None-Match, If-Modified-Since (§13.1.3), compared with the
// stored Last-Modified only: a Date is not a validator, and using it could hide a change.
// Other methods never get 304.
func NotModified(method string, reqH http.Header, storedH http.Header) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if reqH["If-None-Match"] == nil && reqH["If-Modified-Since"] == nil {
		return false // the common case, on every hit: nothing can make the answer a 304
	}
	tags := storedETags(storedH)
	lm, hasLM := httpDate(fieldValues(storedH, "Last-Modified"))
	if im := fieldValues(reqH, "If-Match"); len(im) > 0 {
		if !matchList(im, tags, true) {
			return false
		}
	} else if t, ok := singleDate(fieldValues(reqH, "If-Unmodified-Since")); ok {
		if !hasLM || lm.After(t) {
			return false
		}
	}
	if inm := fieldValues(reqH, "If-None-Match"); len(inm) > 0 {
		return matchList(inm, tags, false)
	}
	t, ok := singleDate(fieldValues(reqH, "If-Modified-Since"))
	return ok && hasLM && !lm.After(t)
}

// Validators returns the conditional header to send to the origin to revalidate a stored
// response (RFC 9111 §4.3.1): If-None-Match with every stored entity-tag, and
// If-Modified-Since with the stored Last-Modified, verbatim (origins often compare it as a
// string). The header is empty, not nil, when the response has no validator; the caller
// then fetches unconditionally.
func Validators(storedH http.Header) http.Header {
	out := http.Header{}
	var tags []string
	for _, line := range fieldValues(storedH, "ETag") {
		for _, m := range splitList(line) {
			if _, ok := parseETag(m); ok && !contains(tags, m) {
				tags = append(tags, m)
			}
		}
	}
	if len(tags) > 0 {
		out.Set("If-None-Match", strings.Join(tags, ", "))
	}
	if lm := fieldValues(storedH, "Last-Modified"); len(lm) > 0 {
		if _, ok := httpDate(lm); ok {
			out.Set("If-Modified-Since", trimOWS(lm[0]))
		}
	}
	return out
}

// hopByHop are the fields that describe one connection, never a stored response
// (RFC 9110 §7.6.1; RFC 9111 §3.1).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// keptOn304 are the fields a 304 does not update, because the stored bytes depend on them
// (RFC 9111 §3.2): Content-Length (the 304's, if any, is not about our body; §3.2 says so
// explicitly), Content-Encoding and Content-Range (they describe the stored bytes, which the
// 304 does not replace), and Vary (the stored response is filed under the secondary key its
// Vary produced; a different Vary would make it unreachable or wrongly reachable).
var keptOn304 = []string{"Content-Length", "Content-Encoding", "Content-Range", "Vary"}

// Merge304 returns the stored header updated by a 304's header (RFC 9111 §3.2, §4.3.4):
// every field of the 304 replaces the stored field of the same name, except keptOn304
// (Content-Length, Content-Encoding, Content-Range, Vary), hop-by-hop fields and the fields
// the 304's Connection names. Fields the 304 lacks are kept. Neither input is modified; the
// result shares no slices with them. The caller also moves Stored.RequestTime and
// ResponseTime to the revalidation's, since the merged Date and Age are the 304's.
func Merge304(stored, notModified http.Header) http.Header {
	out := make(http.Header, len(stored)+len(notModified))
	for k, v := range stored {
		out[k] = append([]string(nil), v...)
	}
	skip := append(append([]string(nil), hopByHop...), keptOn304...)
	for _, line := range fieldValues(notModified, "Connection") {
		for _, m := range splitList(line) {
			skip = append(skip, http.CanonicalHeaderKey(m))
		}
	}
	keys := make([]string, 0, len(notModified))
	for k := range notModified {
		if !contains(skip, http.CanonicalHeaderKey(k)) {
			keys = append(keys, k)
		}
	}
	// Sorted, so that a field spelled several ways in a hand-built header merges the same
	// way every time.
	slices.Sort(keys)
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		for sk := range out {
			if sk != ck && http.CanonicalHeaderKey(sk) == ck {
				delete(out, sk)
			}
		}
		delete(out, ck)
	}
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], notModified[k]...)
	}
	return out
}
