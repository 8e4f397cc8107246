package waf

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/corazawaf/coraza/v3"
)

// TestPaddingBypass: by default a body over the limit is refused, so an attack placed after
// body_limit bytes of padding does not reach the origin uninspected. inspect_partial, an
// explicit choice, lets it through, as documented.
func TestPaddingBypass(t *testing.T) {
	if c := (Config{}).normalized(); c.OverLimit != OverLimitReject || c.BodyLimit != 16<<10 {
		t.Fatalf("defaults: over_limit %q, body_limit %d; want reject, 16384", c.OverLimit, c.BodyLimit)
	}
	body := formWithPad("<script>alert(1)</script>", false, 17<<10)
	for _, c := range []struct {
		site   string
		status int
		reason string
	}{
		{siteBlock, http.StatusRequestEntityTooLarge, "waf:body-too-large"},
		{siteDetect, http.StatusRequestEntityTooLarge, "waf:body-too-large"}, // over_limit is not mode
		{siteBigPartial, 0, ""}, // the documented risk of inspect_partial
	} {
		s, _ := newTestStage(t)
		r := req{method: "POST", target: "/search", ctype: form, body: body}.build()
		v, err := judge(s, r, c.site)
		if err != nil || v.Block != (c.status != 0) || v.Status != c.status || v.Reason != c.reason {
			t.Errorf("%s: verdict %+v, err %v; want status %d reason %q", c.site, v, err, c.status, c.reason)
		}
	}
}

// TestExactLimitBody: a body of exactly body_limit bytes is not cut, so a malformed JSON or
// multipart body of that size is refused like a shorter one (Coraza flags a body that
// reaches its own limit as cut, hence the engine's limit of body_limit+1). One byte more is
// cut: inspect_partial lets the cut body through, reject refuses it.
func TestExactLimitBody(t *testing.T) {
	const mp = "multipart/form-data; boundary=b"
	// badJSON is an unterminated JSON string of n bytes.
	badJSON := func(n int) string { return `{"a":"` + strings.Repeat("x", n-6) }
	// badMultipart is a multipart body of n bytes whose part never ends (no closing
	// boundary): MULTIPART_STRICT_ERROR unless the body was cut.
	badMultipart := func(n int) string {
		head := "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n"
		return head + strings.Repeat("x", n-len(head))
	}
	type tc struct {
		name, site, ctype, body string
		status                  int
		reasons                 []string // any of; nil: let through
	}
	var cases []tc
	for _, site := range []struct {
		name    string
		limit   int
		partial bool
	}{{siteBlock, DefaultBodyLimit, false}, {sitePartial, smallLimit, true}, {siteReject, smallLimit, false}} {
		for _, kind := range []struct {
			name, ctype string
			body        func(int) string
			reasons     []string
		}{
			{"json", json, badJSON, []string{"waf:200002"}},
			{"multipart", mp, badMultipart, []string{"waf:200002", "waf:200003"}},
		} {
			for _, n := range []int{site.limit - 1, site.limit} {
				cases = append(cases, tc{fmt.Sprintf("%s %s %d bytes", site.name, kind.name, n), site.name, kind.ctype, kind.body(n), 400, kind.reasons})
			}
			over := tc{fmt.Sprintf("%s %s %d bytes", site.name, kind.name, site.limit+1), site.name, kind.ctype, kind.body(site.limit + 1), 413, []string{"waf:body-too-large"}}
			if site.partial {
				over.status, over.reasons = 0, nil // cut: its parse error does not block
			}
			cases = append(cases, over)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := newTestStage(t)
			r := req{method: "POST", target: "/submit", ctype: c.ctype, body: c.body}.build()
			v, err := judge(s, r, c.site)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			ok := v.Block == (c.status != 0) && v.Status == c.status
			if ok && c.reasons != nil {
				ok = false
				for _, want := range c.reasons {
					ok = ok || v.Reason == want
				}
			}
			if !ok {
				t.Fatalf("verdict %+v, want status %d reason in %q", v, c.status, c.reasons)
			}
			if got, err := io.ReadAll(r.Body); err != nil || string(got) != c.body {
				t.Fatalf("origin-facing body differs (%d bytes, err %v), want the %d sent", len(got), err, len(c.body))
			}
		})
	}
}

// TestExclusionPathTricks: a path-prefix exclusion does not apply to a raw path that an
// origin may resolve out of the prefix: "..;" (Tomcat, Spring), a backslash (IIS), an
// encoded backslash or semicolon. The XSS rules excluded under /cms/ must still match (the
// path traversal rules match too, and may name the block).
func TestExclusionPathTricks(t *testing.T) {
	logs := &syncBuffer{}
	s := NewStage(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	s.Use(testSet(t))
	const xss = "?q=%3Cscript%3Ealert(1)%3C/script%3E"
	cases := []struct {
		path  string
		block bool
	}{
		{"/cms/edit", false},
		{"/cms/edit;jsessionid=0123ABC", false}, // a ; outside a dot-segment is a path parameter
		{"/cms/..;/admin", true},
		{"/cms/..;x=1/admin", true},
		{"/cms/%2e%2e;/admin", true},
		{"/cms/.%2E;/admin", true},
		{"/cms/..%3b/admin", true},
		{"/cms/..%3B/admin", true},
		{`/cms\..\admin`, true},
		{`/cms/..\admin`, true},
		{"/cms/..%5cadmin", true},
		{"/cms/..%5Cadmin", true},
		{"/cms/edit%3bx", true},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RequestURI = c.path + xss
			r.URL.RawQuery = xss[1:]
			r.URL.Path = c.path
			r.RemoteAddr = "203.0.113.7:51234"
			r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
			r.Header.Set("Accept", "text/html")
			before := len(logs.String())
			v, err := judge(s, r, siteExcl)
			if err != nil || v.Block != c.block {
				t.Fatalf("verdict %+v, err %v; want block %v", v, err, c.block)
			}
			if line := logs.String()[before:]; c.block && !strings.Contains(line, "941100") {
				t.Errorf("XSS rule 941100 did not match, the exclusion applied: %s", line)
			}
		})
	}
	// A query may hold what the path may not.
	r := req{target: "/cms/edit" + xss + "&sep=a%3Bb&bs=c%5Cd"}.build()
	if v, err := judge(s, r, siteExcl); err != nil || v.Block {
		t.Errorf("%%3B and %%5C in the query: verdict %+v, err %v; want the exclusion to apply", v, err)
	}
}

// TestClientAddress: Coraza's REMOTE_ADDR is the client behind the site's trusted proxies.
func TestClientAddress(t *testing.T) {
	w, err := coraza.NewWAF(coraza.NewWAFConfig().WithDirectives(
		"SecRuleEngine On\nSecRule REMOTE_ADDR \"@ipMatch 198.51.100.9\" \"id:1,phase:1,deny,status:403\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	s, _ := newTestStage(t)
	s.Use(&Set{sites: map[string]*siteWAF{
		"behind": {engine: w, reject: true, limit: DefaultBodyLimit, trusted: trusted},
		"direct": {engine: w, reject: true, limit: DefaultBodyLimit},
	}})
	cases := []struct {
		site, peer, xff string
		block           bool
	}{
		{"behind", "10.1.2.3:4000", "198.51.100.9", true},
		{"behind", "10.1.2.3:4000", "198.51.100.9, 10.9.9.9", true},   // through two proxies
		{"behind", "10.1.2.3:4000", "198.51.100.9, 192.0.2.1", false}, // the client is 192.0.2.1
		{"behind", "192.0.2.1:4000", "198.51.100.9", false},           // an untrusted peer cannot choose
		{"behind", "198.51.100.9:4000", "", true},
		{"direct", "10.1.2.3:4000", "198.51.100.9", false}, // no trusted proxies: the peer
		{"direct", "198.51.100.9:4000", "", true},
		{"direct", "[::ffff:198.51.100.9]:4000", "", true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		v, err := judge(s, r, c.site)
		if err != nil || v.Block != c.block {
			t.Errorf("%s peer %s xff %q: verdict %+v, err %v; want block %v", c.site, c.peer, c.xff, v, err, c.block)
		}
	}
	for _, c := range []struct {
		peer, xff, host string
		port            int
	}{
		{"10.1.2.3:4000", "198.51.100.9", "198.51.100.9", 0},
		{"192.0.2.1:4000", "198.51.100.9", "192.0.2.1", 4000},
		{"not an address", "", "not an address", 0},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if host, port := clientAddr(r, trusted); host != c.host || port != c.port {
			t.Errorf("clientAddr(%s, %q) = %s, %d; want %s, %d", c.peer, c.xff, host, port, c.host, c.port)
		}
	}

	// Compile keeps each site's trusted proxies, and they do not make another engine.
	set, err := Compile(map[string]Config{"a": {TrustedProxies: trusted}, "b": {}})
	if err != nil {
		t.Fatal(err)
	}
	if set.sites["a"].engine != set.sites["b"].engine {
		t.Error("trusted proxies made another engine")
	}
	if got := set.sites["a"].trusted; len(got) != 1 || got[0] != trusted[0] || set.sites["b"].trusted != nil {
		t.Errorf("trusted proxies: a %v, b %v", got, set.sites["b"].trusted)
	}
}

// TestMaxEngines: a bundle may not make a node compile more than MaxEngines engines; the
// count ignores what does not change an engine.
func TestMaxEngines(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	same := map[string]Config{
		"a": {},
		"b": {Mode: ModeDetect, OverLimit: OverLimitInspectPartial, TrustedProxies: p},
		"c": {Paranoia: 1, AnomalyThreshold: 5, BodyLimit: DefaultBodyLimit},
		"d": {Exclusions: []Exclusion{{IDs: []int{942100, 941100}}, {IDs: []int{942100}}}},
		"e": {Exclusions: []Exclusion{{IDs: []int{941100, 942100}}}},
	}
	if n := DistinctEngines(same); n != 2 {
		t.Errorf("DistinctEngines = %d, want 2", n)
	}
	if n := DistinctEngines(nil); n != 0 {
		t.Errorf("DistinctEngines(nil) = %d, want 0", n)
	}
	many := map[string]Config{}
	for i := range MaxEngines + 1 {
		many[fmt.Sprintf("site%d", i)] = Config{AnomalyThreshold: 10 + i}
		many[fmt.Sprintf("twin%d", i)] = Config{AnomalyThreshold: 10 + i, Mode: ModeDetect}
	}
	if n := DistinctEngines(many); n != MaxEngines+1 {
		t.Fatalf("DistinctEngines = %d, want %d", n, MaxEngines+1)
	}
	set, err := Compile(many)
	if err == nil || set != nil || !strings.Contains(err.Error(), fmt.Sprintf("%d distinct WAF configurations", MaxEngines+1)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("at most %d", MaxEngines)) {
		t.Errorf("Compile with %d engines: set %v, err %v; want an error naming the limit", MaxEngines+1, set, err)
	}
}

// TestCheckWithoutPrepare: when the set is swapped between Prepare and Check (the site had
// no WAF when Prepare ran), Check reads the body itself: it is never let through uninspected.
func TestCheckWithoutPrepare(t *testing.T) {
	s, _ := newTestStage(t)
	r := req{method: "POST", target: "/", ctype: "application/x-www-form-urlencoded", body: "q=" + url.QueryEscape("<script>alert(1)</script>")}.build()
	v, err := s.Check(r.Context(), r, siteBlock)
	if err != nil || !v.Block {
		t.Fatalf("verdict %+v err %v: an unprepared body was not inspected", v, err)
	}
}
