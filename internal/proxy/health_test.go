package proxy

import (
	"bytes"
	"io"
	"log/slog"
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

// syncBuffer is a log sink that the handler's goroutines may write while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// listen reserves the proxy's port before its snapshot exists, so that a site's origin can be
// the proxy itself (a loop).
func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// serveOn starts a handler made with cfg (Store and Logger filled in when nil) on ln, in front
// of one origin.
func serveOn(t *testing.T, ln net.Listener, cfg Config, origin string) *env {
	t.Helper()
	snap, err := snapshot.Compile(snapshot.Spec{Version: "t", Sites: []snapshot.SiteSpec{{
		Name: "test", Hosts: []string{"*"}, Timeouts: snapshot.TimeoutSpec{FirstByte: 2 * time.Second},
		Origins: []snapshot.OriginSpec{{URL: origin}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store == nil {
		store, err := cache.Open(cache.Config{Dir: t.TempDir(), MemoryBytes: 64 << 20, DiskBytes: 256 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		cfg.Store = store
	}
	h := New(snap, cfg)
	t.Cleanup(h.Close)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{proxy: srv, h: h, store: cfg.Store}
}

// startWith starts a handler made with cfg in front of origin.
func startWith(t *testing.T, cfg Config, origin string) *env {
	t.Helper()
	ln, _ := listen(t)
	return serveOn(t, ln, cfg, origin)
}

// panicTransport panics in RoundTrip for paths under /panic and forwards the rest. When gate
// is set, a panicking call first waits for it to close.
type panicTransport struct {
	next  http.RoundTripper
	gate  chan struct{}
	calls atomic.Int32 // panicking calls
}

func (p *panicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.Path, "/panic") {
		return p.next.RoundTrip(r)
	}
	p.calls.Add(1)
	if p.gate != nil {
		<-p.gate
	}
	panic("boom in the transport")
}

// panicBody yields left bytes of its body, waits for gate (if set), then panics.
type panicBody struct {
	gate <-chan struct{}
	left int
}

func (b *panicBody) Read(p []byte) (int, error) {
	if b.left > 0 {
		n := copy(p[:min(len(p), b.left)], whole)
		b.left -= n
		return n, nil
	}
	if b.gate != nil {
		<-b.gate
	}
	panic("boom in the body")
}

func (b *panicBody) Close() error { return nil }

// whole is bodyPanicTransport's body: more than net/http buffers, so that the client has the
// headers and part of the body when the rest breaks off.
var whole = strings.Repeat("x", 100_000)

// bodyPanicTransport answers every request 200 with a cacheable body. The first answer's body
// panics after 64 KiB (once gate closes); later ones are whole.
type bodyPanicTransport struct {
	gate  chan struct{}
	calls atomic.Int32
}

func (bt *bodyPanicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r, ContentLength: int64(len(whole)),
		Header: http.Header{"Cache-Control": {"max-age=100"}, "Content-Length": {strconv.Itoa(len(whole))}},
		Body:   io.NopCloser(strings.NewReader(whole)),
	}
	if bt.calls.Add(1) == 1 {
		resp.Body = &panicBody{gate: bt.gate, left: 64 << 10}
	}
	return resp, nil
}

func wantHealth(t *testing.T, h *Handler, want Health) {
	t.Helper()
	got := h.Health()
	if want.Responses == ([5]uint64{}) {
		got.Responses = want.Responses // this case does not check the status classes
	}
	if got != want {
		t.Fatalf("Health() = %+v, want %+v", got, want)
	}
}

func TestHealthCountsOnlyTheNodesOwnErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	cases := []struct {
		name     string
		origin   func(w http.ResponseWriter, r *http.Request) // nil: the origin is down
		requests int
		status   int
		cs       string
	}{
		{"miss then hit", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=100")
			io.WriteString(w, "hello")
		}, 2, 200, "hit"},
		{"origin down", nil, 1, 502, "detail=origin-unreachable"},
		{"origin 500 passed through", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "broken", 500)
		}, 1, 500, "fwd-status=500"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := down
			if c.origin != nil {
				url = newOrigin(t, c.origin).URL
			}
			e := startWith(t, Config{}, url)
			var resp *http.Response
			for i := 0; i < c.requests; i++ {
				if i > 0 {
					eventually(t, "object stored", func() bool { _, ok := e.store.Get("http://" + e.proxy.Listener.Addr().String() + "/a"); return ok })
				}
				resp, _ = e.get(t, "/a")
			}
			wantStatus(t, resp, c.status, c.cs)
			var classes [5]uint64
			classes[c.status/100-1] = uint64(c.requests)
			wantHealth(t, e.h, Health{Requests: uint64(c.requests), Responses: classes})
		})
	}
}

func TestPanicInTransportOnPassThrough(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	logs := &syncBuffer{}
	e := startWith(t, Config{Transport: &panicTransport{next: http.DefaultTransport}, Logger: slog.New(slog.NewTextHandler(logs, nil))}, o.URL)

	resp, body := e.do(t, http.MethodPost, "/panic")
	wantStatus(t, resp, 500, "rhizome; fwd=miss; detail=internal-error")
	if !strings.Contains(body, "request id: "+resp.Header.Get("X-Request-Id")) {
		t.Fatalf("error page lacks the request id: %q", body)
	}
	wantHealth(t, e.h, Health{Requests: 1, NodeErrors: 1, Panics: 1})
	l := logs.String()
	for _, want := range []string{"level=ERROR", "panic in origin transport", "boom in the transport", "stack=", "request_id=" + resp.Header.Get("X-Request-Id")} {
		if !strings.Contains(l, want) {
			t.Errorf("logs lack %q:\n%s", want, l)
		}
	}

	// The process, and the handler, live on.
	resp, body = e.do(t, http.MethodPost, "/ok")
	if resp.StatusCode != 200 || body != "fine" {
		t.Fatalf("after the panic: %d %q", resp.StatusCode, body)
	}
	wantHealth(t, e.h, Health{Requests: 2, NodeErrors: 1, Panics: 1})
}

func TestPanicInTransportOnCachedGetReleasesWaiters(t *testing.T) {
	pt := &panicTransport{next: http.DefaultTransport, gate: make(chan struct{})}
	e := startWith(t, Config{Transport: pt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "http://127.0.0.1:1")
	const n = 8
	client := &http.Client{Timeout: 5 * time.Second} // a waiter left hanging fails here
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(e.proxy.URL + "/panic")
			if err != nil {
				errs <- err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// lead's own recovery answers a panic during a cache fetch 500 internal-error.
			if resp.StatusCode != 500 || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=internal-error") {
				errs <- resp.Status + " " + resp.Header.Get("Cache-Status")
			}
		}()
	}
	eventually(t, "every request to reach the handler", func() bool { return e.h.Health().Requests == n })
	close(pt.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	calls := uint64(pt.calls.Load())
	if calls >= n {
		t.Fatalf("%d transport calls for %d requests: none waited on the flight", calls, n)
	}
	wantHealth(t, e.h, Health{Requests: n, NodeErrors: n, Panics: calls})
}

func TestPanicInFillGoroutineAbortsTheFill(t *testing.T) {
	bt := &bodyPanicTransport{gate: make(chan struct{})}
	e := startWith(t, Config{Transport: bt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "http://127.0.0.1:1")
	const n = 4
	client := &http.Client{Timeout: 5 * time.Second} // a waiter left hanging fails here
	var wg sync.WaitGroup
	var cut atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(e.proxy.URL + "/f")
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case err != nil && strings.Contains(err.Error(), "Timeout"):
				t.Errorf("waiter hung: %v", err)
			case err != nil:
				cut.Add(1) // the fill broke off: the client must see it broken, not short
			case string(b) != whole:
				t.Errorf("body %q given as whole", b)
			}
		}()
	}
	eventually(t, "every request to reach the handler", func() bool { return e.h.Health().Requests == n })
	close(bt.gate)
	wg.Wait()
	if cut.Load() < 2 {
		t.Fatalf("%d clients saw the broken fill, want the leader and at least one waiter", cut.Load())
	}
	wantHealth(t, e.h, Health{Requests: n, NodeErrors: 1, Panics: 1})

	// Nothing was stored from the broken fill, and the key works again.
	resp, body := e.get(t, "/f")
	if body != whole || strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after the panic: %q Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
}

func TestPanicAfterHeadersCutsTheResponse(t *testing.T) {
	bt := &bodyPanicTransport{}
	e := startWith(t, Config{Transport: bt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "http://127.0.0.1:1")
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/p", nil) // streamed on the request's goroutine
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err == nil:
		t.Fatalf("a response cut by a panic looked whole: %d, %d bytes", resp.StatusCode, len(b))
	case strings.Contains(err.Error(), "Timeout"):
		t.Fatalf("the cut response hung: %v", err)
	}
	wantHealth(t, e.h, Health{Requests: 1, NodeErrors: 1, Panics: 1})
}

func TestGoSafe(t *testing.T) {
	e := startWith(t, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "http://127.0.0.1:1")
	released := make(chan struct{})
	var deferred atomic.Bool
	e.h.goSafe("test work", func() {
		defer deferred.Store(true)
		panic("boom")
	}, func() { close(released) })
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("onPanic never ran")
	}
	if !deferred.Load() {
		t.Fatal("fn's deferred calls did not run before onPanic")
	}
	wantHealth(t, e.h, Health{NodeErrors: 1, Panics: 1})
}

func TestLoopBackToItselfIs508(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			ln, self := listen(t)
			e := serveOn(t, ln, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, self)
			resp, _ := e.do(t, method, "/loop")
			// The inner hop answers 508; the outer one passes it through like any origin's answer.
			wantStatus(t, resp, http.StatusLoopDetected, "fwd-status=508")
			wantHealth(t, e.h, Health{Requests: 2, NodeErrors: 1})
		})
	}
}

func TestLoopThroughAnotherNode(t *testing.T) {
	lnA, a := listen(t)
	lnB, b := listen(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ea := serveOn(t, lnA, Config{Name: "edge-a", Logger: quiet}, b)
	eb := serveOn(t, lnB, Config{Name: "edge-b", Logger: quiet}, a)
	resp, _ := ea.do(t, http.MethodPost, "/loop")
	wantStatus(t, resp, http.StatusLoopDetected, "edge-a; fwd=bypass; fwd-status=508")
	wantHealth(t, ea.h, Health{Requests: 2, NodeErrors: 1})
	wantHealth(t, eb.h, Health{Requests: 1}) // edge-b only passed edge-a's answer on
}

func TestViaFromOtherNodesIsNotALoop(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") })
	ln, b := listen(t)
	eb := serveOn(t, ln, Config{Name: "edge-b"}, o.URL)
	ea := startWith(t, Config{Name: "edge-a"}, b)
	resp, body := ea.do(t, http.MethodPost, "/x", "Via", "1.1 rhizome, 1.0 edge-a2 (edge-a)")
	if resp.StatusCode != 200 || body != "origin" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got, want := o.lastRequest().Header.Get("Via"), "1.1 rhizome, 1.0 edge-a2 (edge-a), 1.1 edge-a, 1.1 edge-b"; got != want {
		t.Fatalf("origin saw Via %q, want %q", got, want)
	}
	wantHealth(t, ea.h, Health{Requests: 1})
	wantHealth(t, eb.h, Health{Requests: 1})
}

func TestLooped(t *testing.T) {
	h := &Handler{name: "rhizome"}
	cases := []struct {
		name string
		via  []string
		want bool
	}{
		{"none", nil, false},
		{"ours", []string{"1.1 rhizome"}, true},
		{"ours last", []string{"1.0 fred, 1.1 p.example.net, 1.1 rhizome"}, true},
		{"ours with a comment", []string{"HTTP/2 rhizome (edge)"}, true},
		{"ours on a second field line", []string{"1.1 a", "1.1 b,1.1\trhizome"}, true},
		{"others only", []string{"1.1 rhizome-2, 1.1 a.rhizome, 2 other"}, false},
		{"name only in a comment", []string{"1.1 other (rhizome)"}, false},
		{"case differs", []string{"1.1 Rhizome"}, false},
		{"no protocol", []string{"rhizome"}, false},
		{"empty entries", []string{",, ,"}, false},
		// An unclosed comment must not hide the entries appended after it.
		{"after an unclosed comment", []string{"1.1 a (open, 1.1 rhizome"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := http.Header{}
			for _, v := range c.via {
				hdr.Add("Via", v)
			}
			if got := h.looped(hdr); got != c.want {
				t.Fatalf("looped(%q) = %v, want %v", c.via, got, c.want)
			}
		})
	}
}
