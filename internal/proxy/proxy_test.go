package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/snapshot"
)

// origin is a scriptable test origin that counts requests per path.
type origin struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int
	last   *http.Request
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{counts: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.counts[r.URL.Path]++
		o.last = r.Clone(context.Background())
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[path]
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// clock is an adjustable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	proxy *httptest.Server
	h     *Handler
	store *cache.Store
	clock *clock
}

type envOpt func(*snapshot.SiteSpec)

// newEnv starts the proxy on a real socket in front of the given origins.
func newEnv(t testing.TB, origins []string, opts ...envOpt) *env {
	t.Helper()
	site := snapshot.SiteSpec{Name: "test", Hosts: []string{"*"}, Timeouts: snapshot.TimeoutSpec{FirstByte: 2 * time.Second}}
	for _, o := range origins {
		site.Origins = append(site.Origins, snapshot.OriginSpec{URL: o})
	}
	for _, opt := range opts {
		opt(&site)
	}
	snap, err := snapshot.Compile(snapshot.Spec{Version: "t", Sites: []snapshot.SiteSpec{site}})
	if err != nil {
		t.Fatal(err)
	}
	store, err := cache.Open(cache.Config{Dir: t.TempDir(), MemoryBytes: 64 << 20, DiskBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c := &clock{t: time.Now()}
	h := New(snap, Config{Store: store, Now: c.now})
	t.Cleanup(h.Close)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{proxy: srv, h: h, store: store, clock: c}
}

func (e *env) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return e.do(t, http.MethodGet, path, hdr...)
}

func (e *env) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.proxy.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(b)
}

// eventually retries cond until it holds or the deadline passes (no bare sleeps).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantStatus(t *testing.T, resp *http.Response, code int, cs string) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d (Cache-Status %q)", resp.StatusCode, code, resp.Header.Get("Cache-Status"))
	}
	if got := resp.Header.Get("Cache-Status"); !strings.Contains(got, cs) {
		t.Fatalf("Cache-Status %q, want it to contain %q", got, cs)
	}
}

func TestMissThenHit(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("X-Hop", "gone")
		w.Header().Set("Connection", "X-Hop")
		io.WriteString(w, "hello")
	})
	e := newEnv(t, []string{o.URL})
	resp, body := e.get(t, "/a")
	wantStatus(t, resp, 200, "fwd=miss; fwd-status=200; stored")
	if body != "hello" {
		t.Fatalf("body %q", body)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Fatal("hop-by-hop header named in Connection reached the client")
	}
	eventually(t, "object stored", func() bool { _, ok := e.store.Get("http://" + e.proxy.Listener.Addr().String() + "/a"); return ok })
	e.clock.advance(10 * time.Second)
	resp, body = e.get(t, "/a")
	wantStatus(t, resp, 200, "hit; ttl=")
	if body != "hello" || resp.Header.Get("Age") != "10" {
		t.Fatalf("hit body %q Age %q", body, resp.Header.Get("Age"))
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
	if n := o.count("/a"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}

func TestNotStored(t *testing.T) {
	cases := []struct {
		name, cc, detail string
		extra            [2]string
	}{
		{"no-store", "no-store", "no-store", [2]string{}},
		{"private", "private, max-age=60", "private", [2]string{}},
		{"vary-star", "max-age=60", "vary", [2]string{"Vary", "*"}},
		{"set-cookie", "max-age=60", "set-cookie", [2]string{"Set-Cookie", "s=1"}},
		{"cdn-cache-control-no-store", "max-age=60", "no-store", [2]string{"CDN-Cache-Control", "no-store"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", c.cc)
				if c.extra[0] != "" {
					w.Header().Set(c.extra[0], c.extra[1])
				}
				io.WriteString(w, "x")
			})
			e := newEnv(t, []string{o.URL})
			for i := 0; i < 3; i++ {
				resp, _ := e.get(t, "/p")
				wantStatus(t, resp, 200, "fwd=miss")
				if !strings.Contains(resp.Header.Get("Cache-Status"), "detail="+c.detail) {
					t.Fatalf("Cache-Status %q lacks detail=%s", resp.Header.Get("Cache-Status"), c.detail)
				}
			}
			if n := o.count("/p"); n != 3 {
				t.Fatalf("origin saw %d requests, want 3", n)
			}
		})
	}
}

func TestCDNCacheControlWins(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache, max-age=0")
		w.Header().Set("CDN-Cache-Control", "max-age=600")
		io.WriteString(w, "edge-cached")
	})
	e := newEnv(t, []string{o.URL})
	e.get(t, "/c")
	eventually(t, "hit", func() bool {
		resp, _ := e.get(t, "/c")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	resp, _ := e.get(t, "/c")
	if resp.Header.Get("Cache-Control") != "no-cache, max-age=0" {
		t.Fatalf("browser Cache-Control changed: %q", resp.Header.Get("Cache-Control"))
	}
}

func TestVary(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Vary", "Accept-Language")
		io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	e := newEnv(t, []string{o.URL})
	for _, lang := range []string{"en", "fr"} {
		resp, body := e.get(t, "/v", "Accept-Language", lang)
		wantStatus(t, resp, 200, "fwd=")
		if body != "lang="+lang {
			t.Fatalf("body %q for %s", body, lang)
		}
	}
	eventually(t, "both variants cached", func() bool {
		r1, b1 := e.get(t, "/v", "Accept-Language", "en")
		r2, b2 := e.get(t, "/v", "Accept-Language", "fr")
		return strings.Contains(r1.Header.Get("Cache-Status"), "hit") && strings.Contains(r2.Header.Get("Cache-Status"), "hit") && b1 == "lang=en" && b2 == "lang=fr"
	})
	if n := o.count("/v"); n != 2 {
		t.Fatalf("origin saw %d requests, want 2 (one per variant)", n)
	}
}

func TestRevalidateWith304(t *testing.T) {
	var version atomic.Int32
	var e *env
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		// Date from the proxy's clock, which the test moves forward.
		w.Header().Set("Date", e.clock.now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("X-Version", strconv.Itoa(int(version.Add(1))))
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "body-v1")
	})
	e = newEnv(t, []string{o.URL})
	e.get(t, "/r")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/r")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	e.clock.advance(20 * time.Second)
	resp, body := e.get(t, "/r")
	wantStatus(t, resp, 200, "fwd=stale; fwd-status=304")
	if body != "body-v1" {
		t.Fatalf("body %q after 304", body)
	}
	if got := o.lastRequest().Header.Get("If-None-Match"); got != `"v1"` {
		t.Fatalf("revalidation sent If-None-Match %q", got)
	}
	if resp.Header.Get("X-Version") != "2" {
		t.Fatalf("304 did not update stored headers: X-Version %q", resp.Header.Get("X-Version"))
	}
	resp, _ = e.get(t, "/r")
	wantStatus(t, resp, 200, "hit")
	if resp.Header.Get("X-Version") != "2" {
		t.Fatalf("refreshed headers not kept: X-Version %q", resp.Header.Get("X-Version"))
	}
}

func TestClientConditionalFromCache(t *testing.T) {
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("ETag", `"abc"`)
		w.Header().Set("Last-Modified", lm)
		io.WriteString(w, "payload")
	})
	e := newEnv(t, []string{o.URL})
	resp, _ := e.get(t, "/c", "If-None-Match", `"abc"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional miss: status %d, want 304", resp.StatusCode)
	}
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/c")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	for _, c := range []struct{ h, v string }{{"If-None-Match", `W/"abc"`}, {"If-Modified-Since", lm}} {
		resp, body := e.get(t, "/c", c.h, c.v)
		if resp.StatusCode != http.StatusNotModified || body != "" {
			t.Fatalf("%s: status %d body %q, want 304 and no body", c.h, resp.StatusCode, body)
		}
		if resp.Header.Get("ETag") != `"abc"` {
			t.Fatal("304 lost its ETag")
		}
	}
	resp, body := e.get(t, "/c", "If-None-Match", `"other"`)
	if resp.StatusCode != 200 || body != "payload" {
		t.Fatalf("non-matching conditional: %d %q", resp.StatusCode, body)
	}
	if n := o.count("/c"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	var n atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		fmt.Fprintf(w, "gen%d", n.Add(1))
	})
	e := newEnv(t, []string{o.URL})
	e.get(t, "/s")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/s")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	e.clock.advance(30 * time.Second)
	resp, body := e.get(t, "/s")
	wantStatus(t, resp, 200, "detail=stale-while-revalidate")
	if body != "gen1" {
		t.Fatalf("stale body %q, want gen1", body)
	}
	eventually(t, "background refresh", func() bool {
		_, body := e.get(t, "/s")
		return body == "gen2"
	})
}

func TestStaleIfError(t *testing.T) {
	var fail atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "boom", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=300")
		io.WriteString(w, "good")
	})
	e := newEnv(t, []string{o.URL})
	e.get(t, "/e")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/e")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	fail.Store(true)
	e.clock.advance(60 * time.Second)
	resp, body := e.get(t, "/e")
	wantStatus(t, resp, 200, "fwd=stale; fwd-status=503")
	if body != "good" || !strings.Contains(resp.Header.Get("Cache-Status"), "stale-if-error") {
		t.Fatalf("body %q Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
	// The origin dies altogether: still served.
	o.Close()
	resp, body = e.get(t, "/e")
	wantStatus(t, resp, 200, "fwd=stale; fwd-status=502")
	if body != "good" {
		t.Fatalf("body %q with origin down", body)
	}
	// Past the stale-if-error window: the error shows.
	e.clock.advance(time.Hour)
	resp, _ = e.get(t, "/e")
	wantStatus(t, resp, 502, "detail=origin-unreachable")
}

func TestAlwaysOnline(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, "kept")
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.Cache.AlwaysOnline = 7 * 24 * time.Hour })
	e.get(t, "/ao")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/ao")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	o.Close()
	e.clock.advance(72 * time.Hour)
	resp, body := e.get(t, "/ao")
	wantStatus(t, resp, 200, "fwd=stale")
	if body != "kept" {
		t.Fatalf("body %q", body)
	}
}

func TestAllOriginsDownNoCache(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	e := newEnv(t, []string{dead})
	start := time.Now()
	resp, body := e.get(t, "/x")
	wantStatus(t, resp, 502, "detail=origin-unreachable")
	if !strings.Contains(body, "request id: "+resp.Header.Get("X-Request-Id")) {
		t.Fatalf("error page lacks the request id: %q", body)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("502 took %v", time.Since(start))
	}
}

func TestFailoverToSecondOrigin(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alive") })
	e := newEnv(t, []string{dead, o.URL})
	for i := 0; i < 10; i++ {
		resp, body := e.get(t, "/f"+strconv.Itoa(i))
		if resp.StatusCode != 200 || body != "alive" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

func TestOriginTimeout(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	e := newEnv(t, []string{o.URL})
	start := time.Now()
	resp, _ := e.get(t, "/hang")
	wantStatus(t, resp, 504, "detail=origin-timeout")
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("timeout took %v, want about the 2s first-byte timeout", d)
	}
}

func TestGarbageOrigin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n")
			}()
		}
	}()
	e := newEnv(t, []string{"http://" + ln.Addr().String()})
	resp, _ := e.get(t, "/g")
	wantStatus(t, resp, 502, "detail=origin-bad-response")
}

func TestTruncatedBodyNotStored(t *testing.T) {
	var n atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		if n.Add(1) == 1 {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "only part")
			// Closing the connection without the rest of the declared body.
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
			return
		}
		io.WriteString(w, "whole")
	})
	e := newEnv(t, []string{o.URL})
	req, _ := http.NewRequest("GET", e.proxy.URL+"/t", nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a truncated origin body reached the client as if complete")
	}
	resp, body := e.get(t, "/t")
	if body != "whole" || strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after truncation: body %q Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
}

func TestCollapse(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=100")
		w.Write([]byte(strings.Repeat("z", 100_000)))
	})
	e := newEnv(t, []string{o.URL})
	const n = 1000
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var bad atomic.Int32
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			resp, err := client.Get(e.proxy.URL + "/cold")
			if err != nil {
				bad.Add(1)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || len(b) != 100_000 || resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	started.Wait()
	eventually(t, "the leader's request to reach the origin", func() bool { return o.count("/cold") == 1 })
	time.Sleep(200 * time.Millisecond) // let the other requests queue on the flight
	close(release)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d clients got a bad answer", bad.Load(), n)
	}
	if got := o.count("/cold"); got != 1 {
		t.Fatalf("origin saw %d requests for one cold key, want 1", got)
	}
}

func TestHeadAndRange(t *testing.T) {
	body := "0123456789abcdefghij"
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("ETag", `"r1"`)
		io.WriteString(w, body)
	})
	e := newEnv(t, []string{o.URL})
	resp, b := e.do(t, http.MethodHead, "/h")
	if resp.StatusCode != 200 || b != "" || resp.Header.Get("Content-Length") != "20" {
		t.Fatalf("HEAD miss: %d %q CL=%q", resp.StatusCode, b, resp.Header.Get("Content-Length"))
	}
	if r := o.lastRequest(); r.Method != http.MethodGet {
		t.Fatalf("HEAD miss fetched with %s, want GET", r.Method)
	}
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/h")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	resp, b = e.do(t, http.MethodHead, "/h")
	wantStatus(t, resp, 200, "hit")
	if b != "" {
		t.Fatal("HEAD got a body")
	}
	cases := []struct {
		rng, want, cr string
		status        int
	}{
		{"bytes=0-4", "01234", "bytes 0-4/20", 206},
		{"bytes=-3", "hij", "bytes 17-19/20", 206},
		{"bytes=15-", "fghij", "bytes 15-19/20", 206},
		{"bytes=18-100", "ij", "bytes 18-19/20", 206},
		{"bytes=50-60", "", "bytes */20", 416},
		{"bytes=0-1,4-5", body, "", 200},
		{"items=0-1", body, "", 200},
	}
	for _, c := range cases {
		t.Run(c.rng, func(t *testing.T) {
			resp, b := e.get(t, "/h", "Range", c.rng)
			if resp.StatusCode != c.status || b != c.want || resp.Header.Get("Content-Range") != c.cr {
				t.Fatalf("Range %s: %d %q Content-Range %q", c.rng, resp.StatusCode, b, resp.Header.Get("Content-Range"))
			}
		})
	}
	// A miss with Range is answered from the object as it fills.
	resp, b = e.get(t, "/h2", "Range", "bytes=2-5")
	if resp.StatusCode != 206 || b != "2345" {
		t.Fatalf("Range on a miss: %d %q", resp.StatusCode, b)
	}
	if o.count("/h") != 1 {
		t.Fatalf("origin saw %d requests for /h", o.count("/h"))
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/other")
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, r.URL.Path)
	})
	e := newEnv(t, []string{o.URL})
	for _, p := range []string{"/item", "/other", "/untouched"} {
		e.get(t, p)
		eventually(t, p+" stored", func() bool { resp, _ := e.get(t, p); return strings.Contains(resp.Header.Get("Cache-Status"), "hit") })
	}
	resp, _ := e.do(t, http.MethodPost, "/item")
	wantStatus(t, resp, 201, "fwd=bypass")
	for p, want := range map[string]string{"/item": "fwd=miss", "/other": "fwd=miss", "/untouched": "hit"} {
		resp, _ := e.get(t, p)
		if !strings.Contains(resp.Header.Get("Cache-Status"), want) {
			t.Fatalf("%s after POST: Cache-Status %q, want %s", p, resp.Header.Get("Cache-Status"), want)
		}
	}
}

func TestAuthorizationBypassesLookup(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, "auth="+r.Header.Get("Authorization"))
	})
	e := newEnv(t, []string{o.URL})
	e.get(t, "/p")
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/p")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	resp, body := e.get(t, "/p", "Authorization", "Bearer secret")
	if body != "auth=Bearer secret" || strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("request with Authorization answered from cache: %q", body)
	}
}

func TestForwardingHeaders(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	t.Run("untrusted", func(t *testing.T) {
		e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.Cache.Disabled = true })
		e.get(t, "/fh", "X-Forwarded-For", "6.6.6.6", "Connection", "X-Secret", "X-Secret", "1", "Keep-Alive", "timeout=5")
		r := o.lastRequest()
		if got := r.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q: a client's own value must not be trusted", got)
		}
		if r.Header.Get("X-Secret") != "" || r.Header.Get("Keep-Alive") != "" {
			t.Fatal("hop-by-hop headers reached the origin")
		}
		if r.Header.Get("Via") != "1.1 rhizome" || r.Header.Get("X-Forwarded-Proto") != "http" {
			t.Fatalf("Via %q X-Forwarded-Proto %q", r.Header.Get("Via"), r.Header.Get("X-Forwarded-Proto"))
		}
		if !strings.HasPrefix(r.Host, "127.0.0.1:") || r.Host == strings.TrimPrefix(o.URL, "http://") {
			t.Fatalf("origin saw Host %q, want the client's Host", r.Host)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) {
			s.Cache.Disabled = true
			s.TrustedProxies = []string{"127.0.0.0/8"}
		})
		e.get(t, "/fh", "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "https")
		r := o.lastRequest()
		if got := r.Header.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q", got)
		}
		if r.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("X-Forwarded-Proto %q", r.Header.Get("X-Forwarded-Proto"))
		}
	})
}

func TestMalformedRequests(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	e := newEnv(t, []string{o.URL})
	for _, raw := range []string{
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	} {
		t.Run(strconv.Quote(raw[:min(len(raw), 40)]), func(t *testing.T) {
			c, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			io.WriteString(c, raw)
			line, _ := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, "HTTP/1.1 400") {
				t.Fatalf("got %q, want a 400", line)
			}
		})
	}
	resp, _ := e.get(t, "/still-alive")
	if resp.StatusCode != 200 {
		t.Fatal("proxy stopped serving after malformed requests")
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n') // echo one line back, upper-cased
		io.WriteString(conn, strings.ToUpper(line))
	})
	e := newEnv(t, []string{o.URL})
	c, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "PING\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

func TestH2C(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "h2c ok")
	})
	e := newEnv(t, []string{o.URL})
	// httptest's server speaks HTTP/1 only; run the same handler on an h2c server.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: e.h, Protocols: &protos}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &cp}}
	resp, err := client.Get("http://" + ln.Addr().String() + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "h2c ok" {
		t.Fatalf("proto %s body %q", resp.Proto, b)
	}
}

func TestSwapSnapshot(t *testing.T) {
	a := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") })
	b := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "B") })
	e := newEnv(t, []string{a.URL}, func(s *snapshot.SiteSpec) { s.Cache.Disabled = true })
	if _, body := e.get(t, "/"); body != "A" {
		t.Fatalf("before swap %q", body)
	}
	next, err := snapshot.Compile(snapshot.Spec{Version: "2", Sites: []snapshot.SiteSpec{{
		Name: "test", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: b.URL}}, Cache: snapshot.CacheSpec{Disabled: true},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	e.h.Swap(next)
	if _, body := e.get(t, "/"); body != "B" {
		t.Fatalf("after swap %q", body)
	}
}

func TestUnknownHost(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.Hosts = []string{"example.com"} })
	resp, _ := e.get(t, "/")
	wantStatus(t, resp, http.StatusMisdirectedRequest, "detail=unknown-host")
	req, _ := http.NewRequest("GET", e.proxy.URL+"/", nil)
	req.Host = "EXAMPLE.com"
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 {
		t.Fatalf("known host: %d", r2.StatusCode)
	}
}

func TestPurgeTagsAreStrippedAndIndexed(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Cache-Tag", "t1, t2")
		w.Header().Set("Surrogate-Key", "k1 k2")
		io.WriteString(w, "tagged")
	})
	e := newEnv(t, []string{o.URL})
	resp, _ := e.get(t, "/tag")
	if resp.Header.Get("Cache-Tag") != "" || resp.Header.Get("Surrogate-Key") != "" {
		t.Fatal("purge tags leaked to the client")
	}
	eventually(t, "stored", func() bool {
		resp, _ := e.get(t, "/tag")
		return strings.Contains(resp.Header.Get("Cache-Status"), "hit")
	})
	if n := e.store.PurgeTag("k2"); n != 1 {
		t.Fatalf("PurgeTag(k2) = %d, want 1", n)
	}
	resp, _ = e.get(t, "/tag")
	wantStatus(t, resp, 200, "fwd=miss")
}
