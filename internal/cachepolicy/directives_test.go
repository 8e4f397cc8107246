package cachepolicy

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestParseDirectives(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want Directives
	}{
		{"max-age", []string{"max-age=60"}, Directives{MaxAge: sec(60), HasMaxAge: true}},
		{"case-insensitive names", []string{"MAX-AGE=60, Public"}, Directives{MaxAge: sec(60), HasMaxAge: true, Public: true}},
		{"quoted value accepted (§5.2)", []string{`max-age="60"`}, Directives{MaxAge: sec(60), HasMaxAge: true}},
		{"spaces around members and equals", []string{" max-age = 60 ,  no-transform "}, Directives{MaxAge: sec(60), HasMaxAge: true, NoTransform: true}},
		{"s-maxage with max-age", []string{"max-age=60, s-maxage=600"}, Directives{MaxAge: sec(60), HasMaxAge: true, SMaxAge: sec(600), HasSMaxAge: true}},
		{"identical duplicate is harmless", []string{"max-age=60, max-age=60"}, Directives{MaxAge: sec(60), HasMaxAge: true}},
		{"conflicting duplicate is stale (§4.2.1)", []string{"max-age=60, max-age=120"}, Directives{HasMaxAge: true}},
		{"conflict across lines", []string{"max-age=60", "max-age=30"}, Directives{HasMaxAge: true}},
		{"conflicting s-maxage", []string{"s-maxage=1, s-maxage=2"}, Directives{HasSMaxAge: true}},
		{"valid then invalid is stale", []string{"max-age=60, max-age=x"}, Directives{HasMaxAge: true}},
		{"saturates at 2^31 s (§1.2.2)", []string{"max-age=99999999999999999999999"}, Directives{MaxAge: maxDelta, HasMaxAge: true}},
		{"exactly 2^31", []string{"s-maxage=2147483648"}, Directives{SMaxAge: maxDelta, HasSMaxAge: true}},
		{"zero", []string{"max-age=0"}, Directives{HasMaxAge: true}},
		{"no-cache bare", []string{"no-cache"}, Directives{NoCache: true}},
		{"no-cache fields canonicalised", []string{`no-cache="set-cookie, x-foo", no-cache="Set-Cookie"`}, Directives{NoCacheFields: []string{"Set-Cookie", "X-Foo"}}},
		{"no-cache bare token field", []string{`no-cache=set-cookie`}, Directives{NoCacheFields: []string{"Set-Cookie"}}},
		{"no-cache empty list is unqualified", []string{`no-cache=""`}, Directives{NoCache: true}},
		{"unterminated quote read to end", []string{`no-cache="Set-Cookie`}, Directives{NoCacheFields: []string{"Set-Cookie"}}},
		{"private bare", []string{"private"}, Directives{Private: true}},
		{"private qualified, comma in quotes", []string{`private="Set-Cookie,Authorization", max-age=5`}, Directives{PrivateFields: []string{"Set-Cookie", "Authorization"}, MaxAge: sec(5), HasMaxAge: true}},
		{"flags", []string{"no-store, must-revalidate, proxy-revalidate, immutable, no-transform, public"}, Directives{NoStore: true, MustRevalidate: true, ProxyRevalidate: true, Immutable: true, NoTransform: true, Public: true}},
		{"RFC 5861 windows", []string{"max-age=600, stale-while-revalidate=30, stale-if-error=86400"}, Directives{MaxAge: sec(600), HasMaxAge: true, StaleWhileRevalidate: sec(30), HasSWR: true, StaleIfError: sec(86400), HasSIE: true}},
		{"duplicate windows keep the smaller", []string{"stale-while-revalidate=30", "stale-while-revalidate=10"}, Directives{StaleWhileRevalidate: sec(10), HasSWR: true}},
		{"unknown directives ignored", []string{"must-understand, foo=bar, x=\"y\""}, Directives{}},
		{"empty", nil, Directives{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseDirectives(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseDirectives(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseDirectivesRejects lists inputs whose directive must be read as invalid: max-age
// and s-maxage then make the response stale, the RFC 5861 windows are ignored, and nothing
// else is set.
func TestParseDirectivesRejects(t *testing.T) {
	stale := Directives{HasMaxAge: true}
	tests := []struct {
		name string
		in   string
		want Directives
	}{
		{"negative", "max-age=-1", stale},
		{"non-numeric", "max-age=abc", stale},
		{"no value", "max-age", stale},
		{"empty value", "max-age=", stale},
		{"fraction", "max-age=1.5", stale},
		{"plus sign", "max-age=+5", stale},
		{"hex", "max-age=0x10", stale},
		{"empty quotes", `max-age=""`, stale},
		{"inner space", "max-age=6 0", stale},
		{"swr negative ignored", "stale-while-revalidate=-1", Directives{}},
		{"sie non-numeric ignored", "stale-if-error=soon", Directives{}},
		{"swr without value ignored", "stale-while-revalidate", Directives{}},
		{"name with space", "no store", Directives{}},
		{"name is not a token", `"no-store"`, Directives{}},
		{"only separators", " , ,, \t,", Directives{}},
		{"only equals", "=5", Directives{}},
		{"no-store hidden in quoted value", `foo="a, no-store"`, Directives{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseDirectives([]string{tt.in}); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseDirectives(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestEffectiveDirectives(t *testing.T) {
	tests := []struct {
		name      string
		policy    func(*Policy)
		h         http.Header
		wantField string
		wantMax   time.Duration
		wantStore bool
	}{
		{"cache-control only", nil, hdr("Cache-Control", "max-age=60"), "Cache-Control", sec(60), false},
		{"targeted wins (RFC 9213)", nil, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=600"), "CDN-Cache-Control", sec(600), false},
		{"targeted replaces entirely: no-store", nil, hdr("Cache-Control", "public, max-age=60", "CDN-Cache-Control", "no-store"), "CDN-Cache-Control", 0, true},
		{"targeted replaces entirely: cc no-store dropped", nil, hdr("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=5"), "CDN-Cache-Control", sec(5), false},
		{"invalid targeted falls back", nil, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=soon"), "Cache-Control", sec(60), false},
		{"unparseable targeted falls back", nil, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "max age 600"), "Cache-Control", sec(60), false},
		{"unterminated quote falls back", nil, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", `max-age=1, private="x`), "Cache-Control", sec(60), false},
		{"empty targeted falls back", nil, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", " "), "Cache-Control", sec(60), false},
		{"disabled", func(p *Policy) { p.TargetedField = "" }, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=600"), "Cache-Control", sec(60), false},
		{"other targeted field", func(p *Policy) { p.TargetedField = "Rhizome-Cache-Control" }, hdr("CDN-Cache-Control", "max-age=600", "Rhizome-Cache-Control", "max-age=7"), "Rhizome-Cache-Control", sec(7), false},
		{"canonical map key, as net/http stores it", nil, http.Header{"Cdn-Cache-Control": {"max-age=9"}}, "CDN-Cache-Control", sec(9), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d, field := p.EffectiveDirectives(tt.h)
			if field != tt.wantField || d.MaxAge != tt.wantMax || d.NoStore != tt.wantStore {
				t.Errorf("got %q %+v, want %q max-age %v no-store %v", field, d, tt.wantField, tt.wantMax, tt.wantStore)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want RequestDirectives
	}{
		{"none", hdr(), RequestDirectives{}},
		{"max-age=0 (browser reload)", hdr("Cache-Control", "max-age=0"), RequestDirectives{HasMaxAge: true}},
		{"all", hdr("Cache-Control", "max-age=10, max-stale=20, min-fresh=30, no-cache, no-store, only-if-cached, stale-if-error=40"),
			RequestDirectives{MaxAge: sec(10), HasMaxAge: true, MaxStale: sec(20), HasMaxStale: true, MinFresh: sec(30), HasMinFresh: true,
				NoCache: true, NoStore: true, OnlyIfCached: true, StaleIfError: sec(40), HasSIE: true}},
		{"max-stale without value", hdr("Cache-Control", "max-stale"), RequestDirectives{MaxStaleAny: true}},
		{"first valid wins", hdr("Cache-Control", "max-age=bad, max-age=5", "Cache-Control", "max-age=1"), RequestDirectives{MaxAge: sec(5), HasMaxAge: true}},
		{"Pragma no-cache without Cache-Control (§5.4)", hdr("Pragma", "No-Cache"), RequestDirectives{NoCache: true}},
		{"Pragma ignored with Cache-Control", hdr("Pragma", "no-cache", "Cache-Control", "max-stale=5"), RequestDirectives{MaxStale: sec(5), HasMaxStale: true}},
		{"Pragma other token", hdr("Pragma", "x-no-cache"), RequestDirectives{}},
		{"case-insensitive", hdr("Cache-Control", "NO-CACHE"), RequestDirectives{NoCache: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRequest(tt.h); got != tt.want {
				t.Errorf("ParseRequest(%v)\n got %+v\nwant %+v", tt.h, got, tt.want)
			}
		})
	}
}

// TestParseRequestRejects lists request directives that must be ignored.
func TestParseRequestRejects(t *testing.T) {
	for _, in := range []string{
		"max-age=-1", "max-age=abc", "max-age", "min-fresh=1.5", "min-fresh", "max-stale=-3",
		"max-stale=soon", "stale-if-error", "stale-if-error=x", ",,,", "max age=5",
	} {
		t.Run(in, func(t *testing.T) {
			if got := ParseRequest(hdr("Cache-Control", in)); got != (RequestDirectives{}) {
				t.Errorf("ParseRequest(%q) = %+v, want nothing", in, got)
			}
		})
	}
}
