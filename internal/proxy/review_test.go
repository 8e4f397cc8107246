package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/snapshot"
)

// A 304 answered to one client's revalidation must not put that client's Set-Cookie into
// the shared copy.
func TestRevalidation304KeepsSetCookieOut(t *testing.T) {
	var e *env
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", e.clock.now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"v"`)
		if r.Header.Get("If-None-Match") == `"v"` {
			w.Header().Set("Set-Cookie", "session="+r.Header.Get("Cookie"))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "page")
	})
	e = newEnv(t, []string{o.URL})
	e.get(t, "/p")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/p")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	e.clock.advance(time.Minute)
	resp, _ := e.get(t, "/p", "Cookie", "alice-secret")
	wantStatus(t, resp, 200, "fwd-status=304")
	resp, body := e.get(t, "/p")
	wantStatus(t, resp, 200, "hit")
	if sc := resp.Header.Get("Set-Cookie"); sc != "" || body != "page" {
		t.Fatalf("another client got Set-Cookie %q (body %q)", sc, body)
	}
}

// A 304 that makes the response private drops the stored copy instead of refreshing it.
func TestRevalidation304TurnsPrivate(t *testing.T) {
	var e *env
	var private atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", e.clock.now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"v"`)
		if private.Load() {
			w.Header().Set("Cache-Control", "private, max-age=10")
			if r.Header.Get("If-None-Match") == `"v"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "mine")
			return
		}
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, "shared")
	})
	e = newEnv(t, []string{o.URL})
	e.get(t, "/q")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/q")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	// A request of the loop above may still be finishing a fill of the shared copy: the
	// request below must start its own revalidation, not join that flight.
	eventually(t, "no fetch in flight", func() bool {
		e.h.mu.Lock()
		defer e.h.mu.Unlock()
		return len(e.h.flights) == 0
	})
	private.Store(true)
	e.clock.advance(time.Minute)
	resp, body := e.get(t, "/q")
	if body != "mine" || strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after a private 304: %q, Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
	if _, ok := e.store.Get("http://" + e.proxy.Listener.Addr().String() + "/q"); ok {
		t.Fatal("object still stored after the origin made it private")
	}
}

// A header named in Connection is not forwarded, so it must not select a Vary variant.
func TestConnectionNamedHeaderDoesNotSelectVariant(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Vary", "Origin")
		if org := r.Header.Get("Origin"); org != "" {
			w.Header().Set("Access-Control-Allow-Origin", org)
		}
		io.WriteString(w, "origin="+r.Header.Get("Origin"))
	})
	e := newEnv(t, []string{o.URL})
	_, body := e.get(t, "/cors", "Origin", "https://good.example", "Connection", "Origin")
	if body != "origin=" {
		t.Fatalf("origin saw a Connection-named header: %q", body)
	}
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/cors", "Origin", "https://good.example", "Connection", "Origin")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	resp, body := e.get(t, "/cors", "Origin", "https://good.example")
	if body != "origin=https://good.example" || resp.Header.Get("Access-Control-Allow-Origin") != "https://good.example" {
		t.Fatalf("real CORS request got %q, ACAO %q: variant poisoned", body, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// Range and conditionals reach the origin for responses that cannot be stored.
func TestRangeOnUncacheable(t *testing.T) {
	content := strings.Repeat("0123456789", 100)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		http.ServeContent(w, r, "x.bin", time.Unix(1e9, 0), strings.NewReader(content))
	})
	e := newEnv(t, []string{o.URL})
	for i := range 3 {
		resp, body := e.get(t, "/video", "Range", "bytes=10-19")
		if resp.StatusCode != http.StatusPartialContent || body != "0123456789" {
			t.Fatalf("request %d: %d, %d bytes, want 206 with 10", i, resp.StatusCode, len(body))
		}
	}
}

// Preconditions are ignored for a stored response that is not 2xx (RFC 9110 §13.2.1).
func TestNoNotModifiedFor404(t *testing.T) {
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Last-Modified", lm)
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "gone")
	})
	e := newEnv(t, []string{o.URL})
	e.get(t, "/deleted")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/deleted")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	resp, body := e.get(t, "/deleted", "If-Modified-Since", lm)
	if resp.StatusCode != http.StatusNotFound || body != "gone" {
		t.Fatalf("conditional on a stored 404: %d %q, want 404", resp.StatusCode, body)
	}
}

// A purge issued while an object is still arriving wins: it is not stored, and a request
// after the purge does not join the old fetch.
func TestPurgeDuringFillWins(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		gen := n.Add(1)
		if gen == 1 {
			w.Header().Set("Content-Length", "8")
			io.WriteString(w, "old")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "-body")
			return
		}
		io.WriteString(w, "new-body")
	})
	e := newEnv(t, []string{o.URL})
	done := make(chan string)
	go func() { _, b := e.get(t, "/obj"); done <- b }()
	eventually(t, "fetch under way", func() bool { return o.count("/obj") == 1 })
	e.store.PurgePrefix("http://" + e.proxy.Listener.Addr().String() + "/")
	_, after := e.get(t, "/obj") // must not join the pre-purge fetch
	close(release)
	if b := <-done; b != "old-body" {
		t.Fatalf("first client got %q", b)
	}
	if after != "new-body" {
		t.Fatalf("request after the purge got %q, want the origin's new answer", after)
	}
	eventually(t, "the new copy stored", func() bool {
		resp, b := e.get(t, "/obj")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit") && b == "new-body"
	})
}

// A disk object removed between lookup and open is served as a miss, not cut short.
func TestEvictedBeforeOpenIsAMiss(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, "on disk")
	})
	store, err := cache.Open(cache.Config{Dir: t.TempDir(), MemoryBytes: 1 << 20, MaxMemoryObject: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snap, _ := snapshot.Compile(snapshot.Spec{Sites: []snapshot.SiteSpec{{Name: "s", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: o.URL}}}}})
	h := New(snap, Config{Store: store})
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://site/d", nil))
		return w
	}
	get()
	eventually(t, "stored", func() bool { _, ok := store.Get("http://site/d"); return ok })
	obj, _ := store.Get("http://site/d")
	if obj.Bytes() != nil {
		t.Fatal("object is in memory; the test needs a disk-only object")
	}
	store.Delete("http://site/d")
	w := httptest.NewRecorder()
	if h.serveObject(w, httptest.NewRequest("GET", "http://site/d", nil), &exchange{site: snap.Site("site")}, obj, 0, "x") {
		t.Fatal("serveObject served an object whose file is gone")
	}
	if len(w.Header()) != 0 || w.Body.Len() != 0 {
		t.Fatalf("serveObject wrote %v %q before failing", w.Header(), w.Body.String())
	}
	if r := get(); r.Body.String() != "on disk" {
		t.Fatalf("after eviction: %d %q", r.Code, r.Body.String())
	}
}

// A body of unknown length that outgrows the store streams whole, and later requests for it
// go straight through instead of being buffered again.
func TestChunkedTooLarge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		for range 64 {
			io.WriteString(w, strings.Repeat("x", 4096))
			w.(http.Flusher).Flush()
		}
	})
	store, err := cache.Open(cache.Config{Dir: t.TempDir(), MemoryBytes: 1 << 20, DiskBytes: 1 << 20, MaxMemoryObject: 1 << 16, MaxObjectBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snap, _ := snapshot.Compile(snapshot.Spec{Sites: []snapshot.SiteSpec{{Name: "s", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: o.URL}}}}})
	srv := httptest.NewServer(New(snap, Config{Store: store}))
	defer srv.Close()
	for i := range 3 {
		resp, err := http.Get(srv.URL + "/big")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 64*4096 {
			t.Fatalf("request %d: %d bytes, %v", i, len(b), err)
		}
		if cs := resp.Header.Get("Cache-Status"); i > 0 && !strings.Contains(cs, "detail=too-large") {
			t.Fatalf("request %d: Cache-Status %q, want it passed as too-large", i, cs)
		}
	}
}
