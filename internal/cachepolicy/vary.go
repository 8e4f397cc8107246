package cachepolicy

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// VaryKey computes the secondary cache key (RFC 9111 §4.1) from the stored response's Vary
// field lines and the request header. ok is false when Vary contains "*": such a response
// is never served from the cache. No Vary (or an empty one) gives ("", true).
//
// Two requests get the same key exactly when they would select the same stored response:
// Vary names (split at every comma) are lowercased, sorted and deduplicated, so "Accept-Encoding, Accept" and
// "accept, accept-encoding, Accept" are one key. Each selecting header is normalised: its
// lines are joined, split into list members (commas inside quoted strings respected),
// members trimmed and empty ones dropped; Accept-Encoding becomes the sorted set of
// lowercased codings with q > 0 (an unreadable q counts as 1, as most servers read it);
// other headers keep their members verbatim. A header absent from the request is kept
// distinct from one present but empty (§4.1: absent only matches absent).
//
// The key is "name=value&name=value" with both sides query-escaped, so it is unambiguous
// and readable in logs; an absent header appears as its bare name.
func VaryKey(vary []string, reqH http.Header) (key string, ok bool) {
	var names []string
	for _, line := range vary {
		for _, m := range splitNames(line) {
			if m == "*" {
				return "", false
			}
			names = append(names, strings.ToLower(m))
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 && n == names[i-1] {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(n))
		values := fieldValues(reqH, n)
		if len(values) == 0 {
			continue
		}
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(selectingValue(n, values)))
	}
	return b.String(), true
}

// splitNames splits a list of field names such as Vary. Names are tokens, so quotes mean
// nothing here and every comma separates.
func splitNames(s string) []string {
	var out []string
	for _, m := range strings.Split(s, ",") {
		out = appendTrimmed(out, m)
	}
	return out
}

// selectingValue normalises the value of one selecting header.
func selectingValue(name string, values []string) string {
	var members []string
	for _, v := range values {
		members = append(members, splitList(v)...)
	}
	if name == "accept-encoding" {
		return acceptEncoding(members)
	}
	return strings.Join(members, ",")
}

// acceptEncoding reduces Accept-Encoding members to the sorted set of acceptable codings:
// order and weights other than "not acceptable" (q=0) do not change which stored variant
// the origin would pick for the usual gzip/br/zstd negotiation.
func acceptEncoding(members []string) string {
	var codings []string
	for _, m := range members {
		coding, params, _ := strings.Cut(m, ";")
		coding = strings.ToLower(trimOWS(coding))
		if coding == "" || qualityZero(params) {
			continue
		}
		codings = append(codings, coding)
	}
	slices.Sort(codings)
	return strings.Join(slices.Compact(codings), ",")
}

// qualityZero reports whether the parameters of an Accept-Encoding member carry q=0.
func qualityZero(params string) bool {
	for _, p := range strings.Split(params, ";") {
		name, val, _ := strings.Cut(p, "=")
		if !strings.EqualFold(trimOWS(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(trimOWS(val), 64)
		return err == nil && q <= 0
	}
	return false
}
