// Package clientip finds a request's client address: the socket's peer, or, behind proxies
// the operator trusts, the address they report. Rate limiting, the WAF, bot classification
// and the headers sent to origins must all agree on it, or a client could be one address to
// one stage and another to the next.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Peer is the socket peer's address (zero when RemoteAddr does not parse).
func Peer(r *http.Request) netip.Addr { return parse(r.RemoteAddr) }

// Trusted reports whether a lies in one of the prefixes.
func Trusted(a netip.Addr, prefixes []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr is the client's address: the peer, or, when the peer is a trusted proxy, the
// right-most X-Forwarded-For entry that is not a trusted proxy (nginx's real_ip_recursive),
// so that a client cannot choose its own address by sending the header. An unparseable
// entry stops the walk at the last trusted address seen.
func Addr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	a := Peer(r)
	if !Trusted(a, trusted) {
		return a
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			p := strings.TrimSpace(parts[j])
			if p == "" {
				continue
			}
			b := parse(p)
			if !b.IsValid() {
				return a
			}
			a = b
			if !Trusted(a, trusted) {
				return a
			}
		}
	}
	return a
}

// parse reads an address with or without a port, unmapping IPv4-in-IPv6 and dropping zones.
func parse(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap().WithZone("")
		}
	}
	return netip.Addr{}
}
