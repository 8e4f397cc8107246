package cachepolicy

import (
	"net/http"
	"testing"
	"time"
)

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if p.HeuristicFraction != 0.1 || p.MaxHeuristic != 24*time.Hour || p.DefaultTTL != 0 || p.MaxTTL != 0 ||
		p.TargetedField != "CDN-Cache-Control" || p.CacheAuthorized || p.IgnoreRequestNoCache {
		t.Errorf("DefaultPolicy() = %+v", p)
	}
}

func TestStorable(t *testing.T) {
	lm := date(t0.Add(-time.Hour))
	auth := hdr("Authorization", "Bearer x")
	tests := []struct {
		name   string
		policy func(*Policy)
		method string
		req    http.Header
		status int
		resp   http.Header
		want   string // "" means storable
	}{
		{"max-age 200", nil, "GET", nil, 200, hdr("Cache-Control", "max-age=60"), ""},
		{"heuristic via Last-Modified", nil, "GET", nil, 200, hdr("Last-Modified", lm), ""},
		{"ETag only: stored to revalidate", nil, "GET", nil, 200, hdr("ETag", `"a"`), ""},
		{"Expires", nil, "GET", nil, 200, hdr("Expires", date(t0.Add(time.Hour))), ""},
		{"invalid Expires still counts (already expired)", nil, "GET", nil, 200, hdr("Expires", "0"), ""},
		{"404 heuristic", nil, "GET", nil, 404, hdr("Last-Modified", lm), ""},
		{"no-cache is storable", nil, "GET", nil, 200, hdr("Cache-Control", "no-cache", "ETag", `"a"`), ""},
		{"302 with max-age", nil, "GET", nil, 302, hdr("Cache-Control", "max-age=60"), ""},
		{"503 with s-maxage", nil, "GET", nil, 503, hdr("Cache-Control", "s-maxage=5"), ""},
		{"public 302 with Last-Modified", nil, "GET", nil, 302, hdr("Cache-Control", "public", "Last-Modified", lm), ""},
		{"DefaultTTL makes a bare 200 storable", func(p *Policy) { p.DefaultTTL = time.Minute }, "GET", nil, 200, hdr(), ""},

		{"HEAD", nil, "HEAD", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"POST", nil, "POST", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"lowercase get", nil, "get", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"206", nil, "GET", nil, 206, hdr("Cache-Control", "max-age=60"), "status"},
		{"304", nil, "GET", nil, 304, hdr("Cache-Control", "max-age=60"), "status"},
		{"1xx", nil, "GET", nil, 103, hdr("Cache-Control", "max-age=60"), "status"},
		{"out of range", nil, "GET", nil, 600, hdr("Cache-Control", "max-age=60"), "status"},
		{"302 without explicit freshness", nil, "GET", nil, 302, hdr("Last-Modified", lm), "status"},
		{"500 without explicit freshness", nil, "GET", nil, 500, hdr("ETag", `"a"`), "status"},
		{"no-store", nil, "GET", nil, 200, hdr("Cache-Control", "max-age=60, no-store"), "no-store"},
		{"targeted no-store beats Cache-Control", nil, "GET", nil, 200, hdr("Cache-Control", "public, max-age=60", "CDN-Cache-Control", "no-store"), "no-store"},
		{"targeted max-age beats Cache-Control private", nil, "GET", nil, 200, hdr("Cache-Control", "private", "CDN-Cache-Control", "max-age=60"), ""},
		{"request no-store", nil, "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), "request-no-store"},
		{"request no-store ignored by policy", func(p *Policy) { p.IgnoreRequestNoCache = true }, "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), ""},
		{"private", nil, "GET", nil, 200, hdr("Cache-Control", "private, max-age=60"), "private"},
		{"private qualified treated as private", nil, "GET", nil, 200, hdr("Cache-Control", `private="Set-Cookie", max-age=60`), "private"},
		{"authorization", nil, "GET", auth, 200, hdr("Cache-Control", "max-age=60"), "authorization"},
		{"authorization + public (§3.5)", nil, "GET", auth, 200, hdr("Cache-Control", "public, max-age=60"), ""},
		{"authorization + s-maxage (§3.5)", nil, "GET", auth, 200, hdr("Cache-Control", "s-maxage=60"), ""},
		{"authorization + must-revalidate (§3.5)", nil, "GET", auth, 200, hdr("Cache-Control", "max-age=60, must-revalidate"), ""},
		{"authorization allowed by policy", func(p *Policy) { p.CacheAuthorized = true }, "GET", auth, 200, hdr("Cache-Control", "max-age=60"), ""},
		{"vary star", nil, "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), "vary-star"},
		{"set-cookie", nil, "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b"), "set-cookie"},
		{"set-cookie + public", nil, "GET", nil, 200, hdr("Cache-Control", "public, max-age=60", "Set-Cookie", "a=b"), ""},
		{"set-cookie + s-maxage", nil, "GET", nil, 200, hdr("Cache-Control", "s-maxage=60", "Set-Cookie", "a=b"), ""},
		{"bare 200", nil, "GET", nil, 200, hdr(), "no-freshness"},
		{"bare 404 even with DefaultTTL", func(p *Policy) { p.DefaultTTL = time.Minute }, "GET", nil, 404, hdr(), "no-freshness"},
		{"public without anything", nil, "GET", nil, 200, hdr("Cache-Control", "public"), "no-freshness"},
		{"targeted field drops Expires", nil, "GET", nil, 200, hdr("CDN-Cache-Control", "public", "Expires", date(t0.Add(time.Hour))), "no-freshness"},
		{"invalid Last-Modified is no validator", nil, "GET", nil, 200, hdr("Last-Modified", "yesterday"), "no-freshness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			ok, reason := p.Storable(tt.method, tt.req, tt.status, tt.resp)
			if ok != (tt.want == "") || reason != tt.want {
				t.Errorf("Storable = %v %q, want reason %q", ok, reason, tt.want)
			}
		})
	}
}
