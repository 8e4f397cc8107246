package cachepolicy

import (
	"net/http"
	"strings"
	"time"
)

// RequestDirectives are the request Cache-Control directives a shared cache honours
// (RFC 9111 §5.2.1). Durations are whole seconds in [0, 2^31 s]; a Has* field says whether
// the directive was present and valid.
type RequestDirectives struct {
	MaxAge, MaxStale, MinFresh          time.Duration
	HasMaxAge, HasMaxStale, HasMinFresh bool
	// MaxStaleAny is set by "max-stale" without a value: any staleness is accepted.
	MaxStaleAny bool
	// NoCache is also set by "Pragma: no-cache" when the request has no Cache-Control.
	NoCache, NoStore, OnlyIfCached bool
	StaleIfError                   time.Duration
	HasSIE                         bool
}

// ParseRequest parses a request's Cache-Control. When the request has no Cache-Control
// field but has "Pragma: no-cache", it sets NoCache (RFC 9111 §5.4).
//
// Unlike ParseDirectives it ignores an invalid value (the directive is then absent) and
// keeps the first valid occurrence of a repeated directive: a client's malformed header must
// not be able to force revalidations on the origin, and ignoring it only ever makes the
// request less demanding than the client meant. "max-stale" with an invalid value is ignored
// too, not read as "any staleness".
func ParseRequest(h http.Header) RequestDirectives {
	var r RequestDirectives
	cc := fieldValues(h, "Cache-Control")
	if len(cc) == 0 {
		for _, line := range fieldValues(h, "Pragma") {
			for _, m := range splitList(line) {
				if strings.EqualFold(m, "no-cache") {
					r.NoCache = true
				}
			}
		}
		return r
	}
	for _, line := range cc {
		for _, m := range splitList(line) {
			name, val, hasVal, _ := splitMember(m)
			v, ok := parseDelta(val)
			ok = ok && hasVal
			switch name {
			case "max-age":
				first(&r.MaxAge, &r.HasMaxAge, v, ok)
			case "max-stale":
				if !hasVal {
					r.MaxStaleAny = true
				} else {
					first(&r.MaxStale, &r.HasMaxStale, v, ok)
				}
			case "min-fresh":
				first(&r.MinFresh, &r.HasMinFresh, v, ok)
			case "stale-if-error":
				first(&r.StaleIfError, &r.HasSIE, v, ok)
			case "no-cache":
				r.NoCache = true
			case "no-store":
				r.NoStore = true
			case "only-if-cached":
				r.OnlyIfCached = true
			}
		}
	}
	return r
}

func first(cur *time.Duration, has *bool, v time.Duration, ok bool) {
	if ok && !*has {
		*cur, *has = v, true
	}
}
