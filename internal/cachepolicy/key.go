package cachepolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// CacheKey normalises a request target into the primary cache key:
//
//	scheme "://" host path ["?" query]
//
// scheme is "http" or "https", any case. host is the request's Host (r.Host); when empty,
// u.Host is used. The host is lowercased, its default port dropped (an empty port too), a
// port written without leading zeros, and an IPv6 literal written in canonical form;
// otherwise it must be a plain DNS-style name of letters, digits, '-', '.', '_', '~' (no
// userinfo, no zone, no raw Unicode: proxies see IDNs as punycode). The path (u.EscapedPath,
// "/" when empty) and the query (u.RawQuery) get RFC 3986 §6.2.2 percent-encoding
// normalisation: unreserved characters are decoded, other escapes get uppercase hex, and
// bytes not allowed there (including a stray '%') are escaped. Nothing else changes: dot
// segments and repeated slashes stay (the origin decides what they mean, and folding them
// here could serve one resource for another), the query keeps its order and is dropped only
// when empty, the fragment is never part of the key.
//
// The key is stable: parsing it with url.Parse and passing the parts back gives the same
// key. Errors are returned for unusable input (nil URL, other scheme, empty or malformed
// host, opaque or relative path); CacheKey never panics.
func CacheKey(scheme, host string, u *url.URL) (string, error) {
	if u == nil {
		return "", errors.New("cachepolicy: nil URL")
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("cachepolicy: scheme %q not http or https", scheme)
	}
	if host == "" {
		host = u.Host
	}
	h, err := normaliseHost(scheme, host)
	if err != nil {
		return "", err
	}
	if u.Opaque != "" {
		return "", fmt.Errorf("cachepolicy: opaque URL %q has no path", u.Opaque)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		return "", fmt.Errorf("cachepolicy: path %q is not absolute", path)
	}
	key := scheme + "://" + h + normalisePercent(path, false)
	if u.RawQuery != "" {
		key += "?" + normalisePercent(u.RawQuery, true)
	}
	return key, nil
}

// normaliseHost checks and normalises the authority of a cache key.
func normaliseHost(scheme, host string) (string, error) {
	if host == "" {
		return "", errors.New("cachepolicy: empty host")
	}
	var name, port string
	if host[0] == '[' {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", fmt.Errorf("cachepolicy: host %q: unterminated IPv6 literal", host)
		}
		addr, err := netip.ParseAddr(host[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", fmt.Errorf("cachepolicy: host %q: bad IPv6 literal", host)
		}
		name = "[" + addr.String() + "]"
		rest := host[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", fmt.Errorf("cachepolicy: host %q: junk after IPv6 literal", host)
			}
			port = rest[1:]
		}
	} else {
		name, port, _ = strings.Cut(host, ":")
		name = strings.ToLower(name)
		if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
			return "", fmt.Errorf("cachepolicy: host %q: not a host name", host)
		}
	}
	if port == "" {
		return name, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("cachepolicy: host %q: bad port", host)
	}
	if p := strconv.FormatUint(n, 10); p != defaultPort(scheme) {
		return name + ":" + p, nil
	}
	return name, nil
}

// normalisePercent applies RFC 3986 §6.2.2.1-2 to a path (query false) or a query.
func normalisePercent(s string, query bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v := unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			if isUnreserved(v) {
				b.WriteByte(v)
				continue
			}
			c = v
		} else if c != '%' && (isUnreserved(c) || strings.IndexByte("!$&'()*+,;=:@/", c) >= 0 || (query && c == '?')) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
