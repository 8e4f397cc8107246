package cachepolicy

import (
	"net/http"
	"testing"
	"time"
)

func TestCurrentAge(t *testing.T) {
	// The §4.2.3 arithmetic with concrete numbers: request sent 11:59:58, response received
	// 12:00:00 (response_delay 2 s), Date 11:59:53 (apparent_age 7 s), now 12:01:00
	// (resident_time 60 s).
	req, resp, now := t0.Add(-2*time.Second), t0, t0.Add(time.Minute)
	dated := func(kv ...string) http.Header {
		return hdr(append([]string{"Date", date(t0.Add(-7 * time.Second))}, kv...)...)
	}
	tests := []struct {
		name string
		st   *Stored
		now  time.Time
		want time.Duration
	}{
		{"apparent age wins: max(7, 3+2) + 60", &Stored{Header: dated("Age", "3"), RequestTime: req, ResponseTime: resp}, now, sec(67)},
		{"corrected age wins: max(7, 10+2) + 60", &Stored{Header: dated("Age", "10"), RequestTime: req, ResponseTime: resp}, now, sec(72)},
		{"no Age: apparent + resident", &Stored{Header: dated(), RequestTime: req, ResponseTime: resp}, now, sec(67)},
		{"invalid Age is 0", &Stored{Header: dated("Age", "-30"), RequestTime: req, ResponseTime: resp}, now, sec(67)},
		{"non-numeric Age is 0", &Stored{Header: dated("Age", "old"), RequestTime: req, ResponseTime: resp}, now, sec(67)},
		{"no Date: response_time is date_value", &Stored{Header: hdr("Age", "1"), RequestTime: req, ResponseTime: resp}, now, sec(63)},
		{"invalid Date", &Stored{Header: hdr("Date", "today", "Age", "1"), RequestTime: req, ResponseTime: resp}, now, sec(63)},
		{"Date in the future: apparent age 0", &Stored{Header: hdr("Date", date(t0.Add(time.Hour))), RequestTime: req, ResponseTime: resp}, now, sec(62)},
		{"unknown request time: no delay", &Stored{Header: hdr("Age", "5"), ResponseTime: resp}, now, sec(65)},
		{"request after response: no delay", &Stored{Header: hdr("Age", "5"), RequestTime: resp.Add(time.Second), ResponseTime: resp}, now, sec(65)},
		{"now before response: no resident time", &Stored{Header: hdr("Age", "5"), ResponseTime: resp}, resp.Add(-time.Hour), sec(5)},
		{"huge Age saturates", &Stored{Header: hdr("Age", "999999999999999"), ResponseTime: resp}, resp, maxDelta},
		{"first Age line used", &Stored{Header: hdr("Age", "5", "Age", "500"), ResponseTime: resp}, resp, sec(5)},
		{"nil", nil, now, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CurrentAge(tt.st, tt.now); got != tt.want {
				t.Errorf("CurrentAge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	d := date(t0)
	tests := []struct {
		name          string
		policy        func(*Policy)
		status        int
		h             http.Header
		want          time.Duration
		wantHeuristic bool
	}{
		{"max-age", nil, 200, hdr("Date", d, "Cache-Control", "max-age=60"), sec(60), false},
		{"s-maxage over max-age (§5.2.2.10)", nil, 200, hdr("Date", d, "Cache-Control", "max-age=60, s-maxage=600"), sec(600), false},
		{"max-age over Expires (§5.3)", nil, 200, hdr("Date", d, "Cache-Control", "max-age=60", "Expires", date(t0.Add(time.Hour))), sec(60), false},
		{"Expires - Date", nil, 200, hdr("Date", d, "Expires", date(t0.Add(time.Hour))), time.Hour, false},
		{"Expires - Date with a skewed Date", nil, 200, hdr("Date", date(t0.Add(-time.Hour)), "Expires", d), time.Hour, false},
		{"Expires without Date uses response time", nil, 200, hdr("Expires", date(t0.Add(time.Hour))), time.Hour, false},
		{"Expires in the past", nil, 200, hdr("Date", d, "Expires", date(t0.Add(-time.Hour))), 0, false},
		{"invalid Expires is already expired", nil, 200, hdr("Date", d, "Expires", "0", "Last-Modified", date(t0.Add(-240*time.Hour))), 0, false},
		{"conflicting Expires lines", nil, 200, hdr("Date", d, "Expires", date(t0.Add(time.Hour)), "Expires", date(t0.Add(2*time.Hour))), 0, false},
		{"invalid max-age is stale, Expires not consulted", nil, 200, hdr("Date", d, "Cache-Control", "max-age=x", "Expires", date(t0.Add(time.Hour))), 0, false},
		{"heuristic 10% (§4.2.2)", nil, 200, hdr("Date", d, "Last-Modified", date(t0.Add(-50*time.Hour))), 5 * time.Hour, true},
		{"heuristic capped at MaxHeuristic", nil, 200, hdr("Date", d, "Last-Modified", date(t0.Add(-30*24*time.Hour))), 24 * time.Hour, true},
		{"heuristic custom fraction and cap", func(p *Policy) { p.HeuristicFraction = 0.5; p.MaxHeuristic = time.Hour }, 200, hdr("Date", d, "Last-Modified", date(t0.Add(-time.Hour))), 30 * time.Minute, true},
		{"heuristic disabled by zero cap", func(p *Policy) { p.MaxHeuristic = 0 }, 200, hdr("Date", d, "Last-Modified", date(t0.Add(-time.Hour))), 0, true},
		{"heuristic for 404", nil, 404, hdr("Date", d, "Last-Modified", date(t0.Add(-10*time.Hour))), time.Hour, true},
		{"no heuristic for 302", nil, 302, hdr("Date", d, "Last-Modified", date(t0.Add(-10*time.Hour))), 0, false},
		{"heuristic for public 302", nil, 302, hdr("Date", d, "Cache-Control", "public", "Last-Modified", date(t0.Add(-10*time.Hour))), time.Hour, true},
		{"Last-Modified after Date", nil, 200, hdr("Date", d, "Last-Modified", date(t0.Add(time.Hour))), 0, true},
		{"DefaultTTL for a bare 200", func(p *Policy) { p.DefaultTTL = time.Minute }, 200, hdr("Date", d), time.Minute, true},
		{"no DefaultTTL for a bare 404", func(p *Policy) { p.DefaultTTL = time.Minute }, 404, hdr("Date", d), 0, false},
		{"no DefaultTTL by default", nil, 200, hdr("Date", d), 0, false},
		{"MaxTTL caps explicit", func(p *Policy) { p.MaxTTL = time.Minute }, 200, hdr("Date", d, "Cache-Control", "max-age=86400"), time.Minute, false},
		{"targeted max-age beats s-maxage", nil, 200, hdr("Date", d, "Cache-Control", "s-maxage=600", "CDN-Cache-Control", "max-age=5"), sec(5), false},
		{"targeted field ignores Expires (RFC 9213 §2.2)", nil, 200, hdr("Date", d, "CDN-Cache-Control", "must-revalidate", "Expires", date(t0.Add(time.Hour))), 0, false},
		{"saturated max-age", nil, 200, hdr("Cache-Control", "max-age=9999999999999"), maxDelta, false},
		{"Expires year 9999 clamped", nil, 200, hdr("Date", d, "Expires", "Fri, 31 Dec 9999 23:59:59 GMT"), maxDelta, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			got, heuristic := p.Lifetime(stored(tt.status, tt.h))
			if got != tt.want || heuristic != tt.wantHeuristic {
				t.Errorf("Lifetime = %v %v, want %v %v", got, heuristic, tt.want, tt.wantHeuristic)
			}
		})
	}
	if got, h := DefaultPolicy().Lifetime(nil); got != 0 || h {
		t.Errorf("Lifetime(nil) = %v %v", got, h)
	}
}

func TestDecide(t *testing.T) {
	// Responses are received at t0 with Date t0 and no Age; age is then now - t0.
	resp := func(cc ...string) http.Header {
		h := hdr("Date", date(t0), "ETag", `"v1"`)
		for _, v := range cc {
			h.Add("Cache-Control", v)
		}
		return h
	}
	tests := []struct {
		name    string
		policy  func(*Policy)
		req     http.Header
		h       http.Header
		age     time.Duration
		want    Action
		reason  string
		wantSIE bool
	}{
		{"fresh", nil, nil, resp("max-age=60"), sec(30), Fresh, "fresh", false},
		{"stale at exactly the lifetime (§4.2: fresh means lifetime > age)", nil, nil, resp("max-age=60"), sec(60), Revalidate, "stale", false},
		{"stale", nil, nil, resp("max-age=60"), sec(90), Revalidate, "stale", false},
		{"max-age=0", nil, nil, resp("max-age=0"), 0, Revalidate, "stale", false},
		{"no-cache", nil, nil, resp("max-age=60, no-cache"), sec(1), Revalidate, "no-cache", false},
		{"qualified no-cache treated as no-cache", nil, nil, resp(`max-age=60, no-cache="Set-Cookie"`), sec(1), Revalidate, "no-cache", false},
		{"no-cache forbids stale-if-error", nil, nil, resp("max-age=60, no-cache, stale-if-error=600"), sec(90), Revalidate, "no-cache", false},
		{"stored no-store is unusable", nil, nil, resp("max-age=60, no-store"), sec(1), Unusable, "no-store", false},
		{"stored private is unusable", nil, nil, resp("max-age=60, private"), sec(1), Unusable, "private", false},
		{"request no-cache", nil, hdr("Cache-Control", "no-cache"), resp("max-age=60"), sec(1), Revalidate, "request-no-cache", false},
		{"request Pragma no-cache", nil, hdr("Pragma", "no-cache"), resp("max-age=60"), sec(1), Revalidate, "request-no-cache", false},
		{"request no-cache ignored by policy", func(p *Policy) { p.IgnoreRequestNoCache = true }, hdr("Cache-Control", "no-cache"), resp("max-age=60"), sec(1), Fresh, "fresh", false},
		{"request max-age=0 (reload)", nil, hdr("Cache-Control", "max-age=0"), resp("max-age=60"), sec(1), Revalidate, "request-max-age", false},
		{"request max-age ignored by policy", func(p *Policy) { p.IgnoreRequestNoCache = true }, hdr("Cache-Control", "max-age=0"), resp("max-age=60"), sec(1), Fresh, "fresh", false},
		{"request max-age equal to age is fine", nil, hdr("Cache-Control", "max-age=10"), resp("max-age=60"), sec(10), Fresh, "fresh", false},
		{"min-fresh not met", nil, hdr("Cache-Control", "min-fresh=30"), resp("max-age=60"), sec(40), Revalidate, "min-fresh", false},
		{"min-fresh met", nil, hdr("Cache-Control", "min-fresh=30"), resp("max-age=60"), sec(30), Fresh, "fresh", false},
		{"immutable shrugs off reload", nil, hdr("Cache-Control", "max-age=0"), resp("max-age=60, immutable"), sec(1), Fresh, "immutable", false},
		{"immutable shrugs off no-cache", nil, hdr("Cache-Control", "no-cache"), resp("max-age=60, immutable"), sec(1), Fresh, "immutable", false},
		{"immutable stale is stale", nil, hdr("Cache-Control", "no-cache"), resp("max-age=60, immutable"), sec(61), Revalidate, "request-no-cache", false},
		{"stale-while-revalidate", nil, nil, resp("max-age=60, stale-while-revalidate=30"), sec(80), StaleRevalidate, "stale-while-revalidate", false},
		{"stale-while-revalidate window edge", nil, nil, resp("max-age=60, stale-while-revalidate=30"), sec(90), StaleRevalidate, "stale-while-revalidate", false},
		{"past stale-while-revalidate", nil, nil, resp("max-age=60, stale-while-revalidate=30"), sec(91), Revalidate, "stale", false},
		{"must-revalidate forbids swr", nil, nil, resp("max-age=60, stale-while-revalidate=30, must-revalidate"), sec(80), Revalidate, "must-revalidate", false},
		{"proxy-revalidate forbids swr", nil, nil, resp("max-age=60, stale-while-revalidate=30, proxy-revalidate"), sec(80), Revalidate, "proxy-revalidate", false},
		{"explicit swr wins over the revalidation s-maxage implies", nil, nil, resp("s-maxage=60, stale-while-revalidate=30"), sec(80), StaleRevalidate, "stale-while-revalidate", false},
		{"s-maxage forbids stale past swr (§5.2.2.10)", nil, nil, resp("s-maxage=60, stale-while-revalidate=30"), sec(100), Revalidate, "s-maxage", false},
		{"s-maxage forbids max-stale", nil, hdr("Cache-Control", "max-stale"), resp("s-maxage=60"), sec(100), Revalidate, "s-maxage", false},
		{"targeted max-age allows swr despite Cache-Control s-maxage", nil, nil, func() http.Header {
			h := resp("s-maxage=60")
			h.Set("CDN-Cache-Control", "max-age=60, stale-while-revalidate=30")
			return h
		}(), sec(80), StaleRevalidate, "stale-while-revalidate", false},
		{"request max-age beats swr", nil, hdr("Cache-Control", "max-age=70"), resp("max-age=60, stale-while-revalidate=30"), sec(80), Revalidate, "request-max-age", false},
		{"max-stale any", nil, hdr("Cache-Control", "max-stale"), resp("max-age=60"), time.Hour, Fresh, "max-stale", false},
		{"max-stale within", nil, hdr("Cache-Control", "max-stale=30"), resp("max-age=60"), sec(90), Fresh, "max-stale", false},
		{"max-stale exceeded", nil, hdr("Cache-Control", "max-stale=30"), resp("max-age=60"), sec(91), Revalidate, "stale", false},
		{"max-stale vs must-revalidate", nil, hdr("Cache-Control", "max-stale"), resp("max-age=60, must-revalidate"), sec(90), Revalidate, "must-revalidate", false},
		{"response stale-if-error", nil, nil, resp("max-age=60, stale-if-error=60"), sec(120), Revalidate, "stale", true},
		{"response stale-if-error exceeded", nil, nil, resp("max-age=60, stale-if-error=60"), sec(121), Revalidate, "stale", false},
		{"request stale-if-error", nil, hdr("Cache-Control", "stale-if-error=600"), resp("max-age=60"), sec(120), Revalidate, "stale", true},
		{"stale-if-error while fresh", nil, nil, resp("max-age=60, stale-if-error=1"), sec(1), Fresh, "fresh", true},
		{"must-revalidate forbids stale-if-error", nil, nil, resp("max-age=60, stale-if-error=600, must-revalidate"), sec(120), Revalidate, "must-revalidate", false},
		{"s-maxage forbids stale-if-error", nil, hdr("Cache-Control", "stale-if-error=600"), resp("s-maxage=60"), sec(120), Revalidate, "s-maxage", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			st := &Stored{Status: 200, Header: tt.h, RequestTime: t0, ResponseTime: t0}
			got := p.Decide(tt.req, st, t0.Add(tt.age))
			if got.Action != tt.want || got.Reason != tt.reason || got.CanStaleIfError != tt.wantSIE {
				t.Errorf("Decide = %+v, want action %d reason %q stale-if-error %v", got, tt.want, tt.reason, tt.wantSIE)
			}
			if got.Action != Unusable && (got.Age != tt.age || got.TTL != got.Lifetime-got.Age || got.Stale != (got.TTL <= 0)) {
				t.Errorf("Decide age/ttl inconsistent: %+v (age %v)", got, tt.age)
			}
		})
	}
	if got := DefaultPolicy().Decide(nil, nil, t0); got.Action != Unusable {
		t.Errorf("Decide(nil) = %+v, want Unusable", got)
	}
}

func TestStaleIfErrorOK(t *testing.T) {
	resp := func(cc string) http.Header { return hdr("Date", date(t0), "Cache-Control", cc) }
	tests := []struct {
		name  string
		req   http.Header
		h     http.Header
		age   time.Duration
		extra time.Duration
		want  bool
	}{
		{"fresh", nil, resp("max-age=60"), sec(10), 0, true},
		{"stale, no permission", nil, resp("max-age=60"), sec(61), 0, false},
		{"response stale-if-error", nil, resp("max-age=60, stale-if-error=100"), sec(160), 0, true},
		{"response stale-if-error exceeded", nil, resp("max-age=60, stale-if-error=100"), sec(161), 0, false},
		{"request stale-if-error", hdr("Cache-Control", "stale-if-error=100"), resp("max-age=60"), sec(160), 0, true},
		{"request max-stale", hdr("Cache-Control", "max-stale"), resp("max-age=60"), time.Hour, 0, true},
		{"operator window", nil, resp("max-age=60"), time.Hour, 2 * time.Hour, true},
		{"operator window exceeded", nil, resp("max-age=60"), 3 * time.Hour, 2 * time.Hour, false},
		{"must-revalidate beats operator window", nil, resp("max-age=60, must-revalidate"), sec(61), time.Hour, false},
		{"proxy-revalidate beats operator window", nil, resp("max-age=60, proxy-revalidate"), sec(61), time.Hour, false},
		{"explicit stale-if-error wins over s-maxage", nil, resp("s-maxage=60, stale-if-error=600"), sec(61), 0, true},
		{"s-maxage beats the operator window", nil, resp("s-maxage=60"), sec(61), time.Hour, false},
		{"s-maxage past stale-if-error", nil, resp("s-maxage=60, stale-if-error=10"), sec(100), time.Hour, false},
		{"no-cache beats stale-if-error", nil, resp("max-age=60, no-cache, stale-if-error=600"), sec(61), time.Hour, false},
		{"must-revalidate while fresh", nil, resp("max-age=60, must-revalidate"), sec(1), 0, true},
		{"no-cache even when fresh", nil, resp("max-age=60, no-cache"), sec(1), time.Hour, false},
		{"no-store", nil, resp("max-age=60, no-store"), sec(1), time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &Stored{Status: 200, Header: tt.h, RequestTime: t0, ResponseTime: t0}
			if got := DefaultPolicy().StaleIfErrorOK(tt.req, st, t0.Add(tt.age), tt.extra); got != tt.want {
				t.Errorf("StaleIfErrorOK = %v, want %v", got, tt.want)
			}
		})
	}
	if DefaultPolicy().StaleIfErrorOK(nil, nil, t0, time.Hour) {
		t.Error("StaleIfErrorOK(nil) = true")
	}
}
