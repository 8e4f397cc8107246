package proxy

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"

	"rhizome/internal/clientip"
)

// hopHeaders are the hop-by-hop fields of RFC 9110 §7.6.1 plus the de-facto ones that
// proxies have always removed; they describe one connection and must not be forwarded.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the hop-by-hop fields, including those named in Connection.
// keepUpgrade leaves Connection/Upgrade in place for protocol upgrades (WebSocket).
func removeHopHeaders(h http.Header, keepUpgrade bool) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			f = textproto.TrimString(f)
			if f == "" || keepUpgrade && strings.EqualFold(f, "upgrade") {
				continue
			}
			h.Del(f)
		}
	}
	for _, f := range hopHeaders {
		if keepUpgrade && (f == "Connection" || f == "Upgrade") {
			continue
		}
		delete(h, f)
	}
	if keepUpgrade {
		h.Set("Connection", "Upgrade")
	}
}

// hasHopHeaders reports whether h carries any hop-by-hop field.
func hasHopHeaders(h http.Header) bool {
	for _, f := range hopHeaders {
		if _, ok := h[f]; ok {
			return true
		}
	}
	return false
}

// upgradeType returns the protocol a request asks to switch to, or "".
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// forwardedFor computes the X-Forwarded-For value to send. A client's own X-Forwarded-For
// is believed, and extended, only when the socket peer is a trusted proxy.
func forwardedFor(r *http.Request, trust []netip.Prefix) string {
	peer := clientip.Peer(r)
	peerStr := ""
	if peer.IsValid() {
		peerStr = peer.String()
	}
	prior := r.Header.Values("X-Forwarded-For")
	if len(prior) == 0 || !clientip.Trusted(peer, trust) {
		return peerStr
	}
	return strings.Join(prior, ", ") + ", " + peerStr
}

// parseTags splits Cache-Tag (comma separated, Cloudflare style) and Surrogate-Key (space
// separated, Fastly style) values into purge tags. Bounded so that an origin cannot make one
// object carry an unbounded index.
func parseTags(h http.Header) []string {
	const maxTags, maxTagLen = 64, 1024
	var tags []string
	add := func(t string) {
		t = strings.TrimSpace(t)
		if t != "" && len(t) <= maxTagLen && len(tags) < maxTags {
			tags = append(tags, t)
		}
	}
	for _, v := range h["Cache-Tag"] {
		for t := range strings.SplitSeq(v, ",") {
			add(t)
		}
	}
	for _, v := range h["Surrogate-Key"] {
		for _, t := range strings.Fields(v) {
			add(t)
		}
	}
	return tags
}
