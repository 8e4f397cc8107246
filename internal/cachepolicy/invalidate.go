package cachepolicy

import (
	"net/http"
	"net/url"
	"strings"
)

// InvalidationTargets lists what a cache must invalidate after an unsafe request
// (RFC 9111 §4.4): when a method other than GET, HEAD, OPTIONS or TRACE got a non-error
// response (2xx or 3xx), the target URI, and the URIs in Location and Content-Location when
// they have the same origin (scheme and host, default port ignored) as the target. A
// different origin is never invalidated, so that one site cannot purge another's objects.
//
// Results are absolute URL strings without fragment or userinfo, resolved against the
// target and deduplicated, target first; feed each to CacheKey. Methods are case-sensitive
// (RFC 9110 §9.1), so "get" counts as unsafe. Empty for safe methods, other statuses, and a
// target that is not absolute (no scheme or host).
func InvalidationTargets(method string, target *url.URL, status int, respH http.Header) []string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return nil
	}
	if status < 200 || status > 399 || target == nil || target.Scheme == "" || target.Host == "" || target.Opaque != "" {
		return nil
	}
	base := *target
	base.User, base.Fragment, base.RawFragment = nil, "", ""
	out := []string{base.String()}
	for _, name := range []string{"Location", "Content-Location"} {
		for _, v := range fieldValues(respH, name) {
			ref, err := url.Parse(trimOWS(v))
			if err != nil || trimOWS(v) == "" {
				continue
			}
			u := base.ResolveReference(ref)
			u.User, u.Fragment, u.RawFragment = nil, "", ""
			if s := u.String(); sameOrigin(&base, u) && !contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// sameOrigin compares scheme and host, case-insensitively and with default ports dropped.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && originHost(a) == originHost(b)
}

func originHost(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" || port == defaultPort(strings.ToLower(u.Scheme)) {
		return host
	}
	return host + ":" + port
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
