package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"rhizome/internal/snapshot"
)

// withRules sets the test site's cache rules.
func withRules(rules ...snapshot.CacheRuleSpec) envOpt {
	return func(s *snapshot.SiteSpec) { s.Cache.Rules = rules }
}

// plainOrigin answers every path with its path as the body and no freshness information:
// not storable under the default policy, storable under a default_ttl.
func plainOrigin(t *testing.T) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
}

func (e *env) stored(path string) bool {
	_, ok := e.store.Get("http://" + e.proxy.Listener.Addr().String() + path)
	return ok
}

func TestCacheRulePrefixDefaultTTL(t *testing.T) {
	o := plainOrigin(t)
	e := newEnv(t, []string{o.URL}, withRules(snapshot.CacheRuleSpec{PathPrefix: "/static/", DefaultTTL: new(time.Hour)}))

	resp, body := e.get(t, "/static/app.js")
	wantStatus(t, resp, 200, "fwd=miss; fwd-status=200; stored")
	if body != "/static/app.js" {
		t.Fatalf("body %q", body)
	}
	eventually(t, "object stored", func() bool { return e.stored("/static/app.js") })
	e.clock.advance(time.Minute)
	resp, _ = e.get(t, "/static/app.js")
	wantStatus(t, resp, 200, "hit; ttl=35") // about an hour less the minute that passed

	// Another path keeps the site's settings: no freshness, not stored.
	for range 2 {
		resp, _ := e.get(t, "/page")
		wantStatus(t, resp, 200, "fwd=miss")
		if cs := resp.Header.Get("Cache-Status"); strings.Contains(cs, "stored") || !strings.Contains(cs, "detail=no-freshness") {
			t.Fatalf("/page: Cache-Status %q", cs)
		}
	}
	if a, b := o.count("/static/app.js"), o.count("/page"); a != 1 || b != 2 {
		t.Fatalf("origin saw /static/app.js %d times (want 1), /page %d times (want 2)", a, b)
	}
}

func TestCacheRuleBypass(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "fresh for ten minutes")
	})
	e := newEnv(t, []string{o.URL}, withRules(snapshot.CacheRuleSpec{PathPrefix: "/api/", Bypass: new(true)}))
	for range 3 {
		resp, _ := e.get(t, "/api/cart")
		wantStatus(t, resp, 200, "rhizome; fwd=bypass; fwd-status=200")
	}
	if n := o.count("/api/cart"); n != 3 {
		t.Fatalf("origin saw %d requests, want 3", n)
	}
	if e.stored("/api/cart") {
		t.Fatal("a bypassed path was stored")
	}
	// The rest of the site caches as before.
	e.get(t, "/index.html")
	eventually(t, "hit", func() bool {
		resp, _ := e.get(t, "/index.html")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
}

// TestCacheRuleEnablesOnDisabledSite: bypass: false in a rule caches its paths on a site
// that sets disabled.
func TestCacheRuleEnablesOnDisabledSite(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "x")
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) {
		s.Cache.Disabled = true
		s.Cache.Rules = []snapshot.CacheRuleSpec{{PathPrefix: "/assets/", Bypass: new(false)}}
	})
	e.get(t, "/assets/logo.png")
	eventually(t, "hit", func() bool {
		resp, _ := e.get(t, "/assets/logo.png")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	for range 2 {
		resp, _ := e.get(t, "/home")
		wantStatus(t, resp, 200, "fwd=bypass")
	}
	if n := o.count("/home"); n != 2 {
		t.Fatalf("origin saw /home %d times, want 2", n)
	}
}

func TestCacheRuleRegexExtension(t *testing.T) {
	o := plainOrigin(t)
	e := newEnv(t, []string{o.URL}, withRules(
		snapshot.CacheRuleSpec{PathRegex: `\.(css|js|png|woff2)$`, DefaultTTL: new(24 * time.Hour)},
	))
	for _, c := range []struct {
		path   string
		cached bool
	}{
		{"/a/site.css", true},
		{"/b/font.woff2?v=3", true}, // the query is not part of what the rule sees
		{"/c/site.css.map", false},  // anchored with $
		{"/d/notcss", false},
	} {
		t.Run(c.path, func(t *testing.T) {
			path, _, _ := strings.Cut(c.path, "?")
			e.get(t, c.path)
			if c.cached {
				eventually(t, "hit", func() bool {
					resp, _ := e.get(t, c.path)
					return strings.Contains(resp.Header.Get("Cache-Status"), "hit; ttl=")
				})
				if n := o.count(path); n != 1 {
					t.Fatalf("origin saw %d requests, want 1", n)
				}
				return
			}
			resp, _ := e.get(t, c.path)
			wantStatus(t, resp, 200, "detail=no-freshness")
			if n := o.count(path); n != 2 {
				t.Fatalf("origin saw %d requests, want 2", n)
			}
		})
	}
}

// TestCacheRuleAlwaysOnline: a rule's always_online window serves its paths stale when the
// origin is down; the site's (off) applies elsewhere.
func TestCacheRuleAlwaysOnline(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, "kept")
	})
	e := newEnv(t, []string{o.URL}, withRules(snapshot.CacheRuleSpec{PathPrefix: "/docs/", AlwaysOnline: new(168 * time.Hour)}))
	for _, p := range []string{"/docs/a", "/blog/a"} {
		e.get(t, p)
		eventually(t, p+" stored", func() bool {
			resp, _ := e.get(t, p)
			return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
		})
	}
	o.Close()
	e.clock.advance(72 * time.Hour)
	resp, body := e.get(t, "/docs/a")
	wantStatus(t, resp, 200, "fwd=stale")
	if body != "kept" {
		t.Fatalf("body %q", body)
	}
	resp, _ = e.get(t, "/blog/a")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("/blog/a: status %d (Cache-Status %q), want 502", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
}
