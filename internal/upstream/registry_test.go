package upstream

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGroupKeepsStateOfUnchangedOrigins(t *testing.T) {
	e := newTestEnv(t)
	g1 := e.reg.Group("site", []PoolConfig{
		pool(t, "primary", nil, "http://a", "http://b"),
		pool(t, "fallback", nil, "http://c"),
	}, Outlier{})
	a1 := origin(t, g1, "http://a")
	a1.Begin().End(Success, 40*time.Millisecond)
	fail(a1, 5) // ejected
	origin(t, g1, "http://b").Begin().End(Failure, time.Millisecond)
	inflight := origin(t, g1, "http://c").Begin()

	// b removed, d added, a's weight changed, c moved to another pool name.
	g2 := e.reg.Group("site", []PoolConfig{
		pool(t, "primary", nil, "http://a*3", "http://d"),
		pool(t, "backup", nil, "http://c"),
	}, Outlier{})
	a2 := origin(t, g2, "http://a")
	if a2 == a1 || a2.st != a1.st || a2.Weight() != 3 {
		t.Fatalf("a: want a new Origin (weight 3) on the same state")
	}
	if a2.Available() {
		t.Fatal("a's ejection lost across the rebuild")
	}
	s := statusOf(t, e.reg, "site", "http://a")
	if s.Requests != 6 || s.Failures != 5 || s.LatencyEWMAms == 0 || s.State != StateEjected || s.Weight != 3 {
		t.Fatalf("a's status after rebuild: %+v", s)
	}
	if c2 := origin(t, g2, "http://c"); c2.st == origin(t, g1, "http://c").st || c2.st.inflight.Load() != 0 {
		t.Fatal("c kept its state though its pool name changed")
	}
	inflight.End(Success, time.Millisecond) // ending on a dropped state is harmless
	for _, gs := range e.reg.Status() {
		for _, p := range gs.Pools {
			for _, o := range p.Origins {
				if o.URL == "http://b" {
					t.Fatal("removed origin b still in status")
				}
			}
		}
	}
	// b comes back: fresh state.
	g3 := e.reg.Group("site", []PoolConfig{pool(t, "primary", nil, "http://a", "http://b")}, Outlier{})
	if s := statusOf(t, e.reg, "site", "http://b"); s.Requests != 0 {
		t.Fatalf("re-added b kept old counters: %+v", s)
	}
	// The old Groups still work for requests in flight.
	if g1.Pick(nil) == nil || g3.Pick(nil) == nil {
		t.Fatal("a group stopped picking after a rebuild")
	}
}

func TestStatusJSON(t *testing.T) {
	e := newTestEnv(t)
	e.reg.Group("b-site", []PoolConfig{pool(t, "p", nil, "http://b")}, Outlier{})
	g := e.reg.Group("a-site", []PoolConfig{pool(t, "p", nil, "http://a")}, Outlier{})
	a := origin(t, g, "http://a")
	a.Begin().End(Success, 20*time.Millisecond)
	fail(a, 1)
	hold := a.Begin()
	defer hold.End(Canceled, 0)
	st := e.reg.Status()
	if len(st) != 2 || st[0].Key != "a-site" || st[1].Key != "b-site" {
		t.Fatalf("status keys not sorted: %+v", st)
	}
	s := st[0].Pools[0].Origins[0]
	want := OriginStatus{URL: "http://a", Weight: 1, State: StateHealthy, LatencyEWMAms: 20, Inflight: 1,
		Requests: 2, Failures: 1, ErrorRate: 0.5, ConsecutiveFailures: 1}
	if s != want {
		t.Fatalf("status\n got %+v\nwant %+v", s, want)
	}
	b, err := json.Marshal(st[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"key":"a-site"`, `"pools":`, `"name":"p"`, `"origins":`, `"url":"http://a"`, `"latency_ewma_ms":20`,
		`"inflight":1`, `"error_rate":0.5`, `"consecutive_failures":1`, `"last_check_ok":false`, `"panic_picks":0`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
	// The error rate forgets after a minute; the totals do not.
	e.clk.Advance(time.Minute)
	if s := statusOf(t, e.reg, "a-site", "http://a"); s.ErrorRate != 0 || s.Requests != 2 {
		t.Fatalf("a minute later: %+v", s)
	}
}

// healthServer is an origin whose health endpoint can be switched between behaviours.
type healthServer struct {
	*httptest.Server
	mode   atomic.Value // "ok", "fail", "degraded", "notfound", "slow"
	checks atomic.Int64
	mu     sync.Mutex
	last   *http.Request
}

func newHealthServer(t *testing.T) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.mode.Store("ok")
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.checks.Add(1)
		h.mu.Lock()
		h.last = r.Clone(r.Context())
		h.mu.Unlock()
		switch h.mode.Load().(string) {
		case "ok":
			w.Write([]byte("status: OK"))
		case "fail":
			http.Error(w, "boom", http.StatusServiceUnavailable)
		case "degraded":
			w.Write([]byte("status: DEGRADED"))
		case "notfound":
			http.NotFound(w, r)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) lastRequest() *http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// newCheckEnv is a registry on the real clock (checkers use real timers) with its log captured.
func newCheckEnv(t *testing.T) (*Registry, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	r := NewRegistry(RegistryOptions{Logger: slog.New(slog.NewJSONHandler(log, nil))})
	t.Cleanup(r.Close)
	return r, log
}

func fastCheck() *HealthCheck {
	return &HealthCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 3}
}

func TestCheckerFlips(t *testing.T) {
	h := newHealthServer(t)
	r, log := newCheckEnv(t)
	g := r.Group("site", []PoolConfig{pool(t, "p", fastCheck(), h.URL), pool(t, "fallback", nil, "http://fallback.invalid")}, Outlier{})
	o, fb := g.Pools()[0].Origins()[0], g.Pools()[1].Origins()[0]
	if !o.Available() {
		t.Fatal("a new origin must start up")
	}
	waitFor(t, "first check", func() bool { return statusOf(t, r, "site", h.URL).LastCheck != nil })
	if s := statusOf(t, r, "site", h.URL); !s.LastCheckOK || s.State != StateHealthy {
		t.Fatalf("after a passing check: %+v", s)
	}

	before := h.checks.Load()
	h.mode.Store("fail")
	waitFor(t, "origin down", func() bool { return !o.Available() })
	if n := h.checks.Load() - before; n < 3 {
		t.Fatalf("down after %d failed checks, want at least Fall = 3", n)
	}
	s := statusOf(t, r, "site", h.URL)
	if s.State != StateUnhealthy || s.LastCheckOK || !strings.Contains(s.LastCheckError, "status 503 outside 200..399") {
		t.Fatalf("after failing checks: %+v", s)
	}
	waitLog(t, log, `"msg":"origin down"`)
	if l := log.String(); !strings.Contains(l, `"level":"WARN"`) || !strings.Contains(l, `"url":"`+h.URL+`"`) ||
		!strings.Contains(l, `"pool":"p"`) || !strings.Contains(l, `"reason":"status 503`) {
		t.Fatalf("down log: %s", l)
	}
	// Primary down: the fallback pool serves; with the fallback tried too, panic mode
	// sends the retry to the down origin rather than fail.
	if p := g.Pick(nil); p != fb {
		t.Fatalf("picked %v with primary down, want the fallback", p.URL())
	}
	if p := g.Pick([]*Origin{fb}); p != o {
		t.Fatal("panic mode did not pick the down origin")
	}

	before = h.checks.Load()
	h.mode.Store("ok")
	waitFor(t, "origin up", func() bool { return o.Available() })
	if n := h.checks.Load() - before; n < 2 {
		t.Fatalf("up after %d passing checks, want at least Rise = 2", n)
	}
	waitLog(t, log, `"msg":"origin up"`)
}

func TestCheckerCriteria(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		check   func(*HealthCheck)
		healthy bool
		errHas  string
	}{
		{"body contains", "ok", func(c *HealthCheck) { c.BodyContains = "OK" }, true, ""},
		{"body lacks", "degraded", func(c *HealthCheck) { c.BodyContains = "OK" }, false, `body does not contain "OK"`},
		{"status out of range", "notfound", func(*HealthCheck) {}, false, "status 404 outside 200..399"},
		{"status range includes 404", "notfound", func(c *HealthCheck) { c.StatusMin, c.StatusMax = 400, 404 }, true, ""},
		{"status range excludes 200", "ok", func(c *HealthCheck) { c.StatusMin, c.StatusMax = 204, 204 }, false, "status 200 outside 204..204"},
		{"timeout", "slow", func(c *HealthCheck) { c.Timeout = 50 * time.Millisecond }, false, "timeout after 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHealthServer(t)
			h.mode.Store(tt.mode)
			r, _ := newCheckEnv(t)
			hc := fastCheck()
			hc.Rise, hc.Fall = 1, 1
			tt.check(hc)
			g := r.Group("site", []PoolConfig{pool(t, "p", hc, h.URL)}, Outlier{})
			o := g.Pools()[0].Origins()[0]
			waitFor(t, "a check", func() bool { return statusOf(t, r, "site", h.URL).LastCheck != nil })
			if tt.healthy {
				// A healthy origin stays up: see two more checks pass.
				n := h.checks.Load()
				waitFor(t, "more checks", func() bool { return h.checks.Load() >= n+2 })
				if !o.Available() || !statusOf(t, r, "site", h.URL).LastCheckOK {
					t.Fatalf("want healthy: %+v", statusOf(t, r, "site", h.URL))
				}
				return
			}
			waitFor(t, "origin down", func() bool { return !o.Available() })
			if s := statusOf(t, r, "site", h.URL); !strings.Contains(s.LastCheckError, tt.errHas) {
				t.Fatalf("last check error %q, want it to contain %q", s.LastCheckError, tt.errHas)
			}
		})
	}
}

func TestCheckerRequest(t *testing.T) {
	h := newHealthServer(t)
	r, _ := newCheckEnv(t)
	hc := fastCheck()
	hc.Method, hc.Path, hc.Host = http.MethodHead, "/healthz?deep=1", "www.example.com"
	r.Group("site", []PoolConfig{pool(t, "p", hc, h.URL+"/prefix/")}, Outlier{})
	waitFor(t, "a check", func() bool { return h.lastRequest() != nil })
	req := h.lastRequest()
	if req.Method != http.MethodHead || req.URL.Path != "/prefix/healthz" || req.URL.RawQuery != "deep=1" ||
		req.Host != "www.example.com" || req.UserAgent() != "rhizome-health-check" {
		t.Fatalf("check request: %s %s host %s UA %q", req.Method, req.URL, req.Host, req.UserAgent())
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct{ origin, path, want string }{
		{"http://o", "/healthz", "http://o/healthz"},
		{"http://o/", "/healthz", "http://o/healthz"},
		{"https://o:8443/api/", "/healthz", "https://o:8443/api/healthz"},
		{"https://o/api", "/h?x=1&y=2", "https://o/api/h?x=1&y=2"},
		{"http://o?a=b#frag", "/h", "http://o/h"},
	}
	for _, tt := range tests {
		if got := checkURL(mustURL(t, tt.origin), tt.path); got != tt.want {
			t.Errorf("checkURL(%s, %s) = %s, want %s", tt.origin, tt.path, got, tt.want)
		}
	}
}

func TestJitter(t *testing.T) {
	d := time.Second
	for _, u := range []uint64{0, 1 << 63, ^uint64(0)} {
		if j := jitter(d, u); j < 900*time.Millisecond || j > 1100*time.Millisecond {
			t.Errorf("jitter(1s, %x) = %s, want 0.9s..1.1s", u, j)
		}
	}
}

func TestCheckerRestartAndRemoval(t *testing.T) {
	h := newHealthServer(t)
	h.mode.Store("degraded")
	r, log := newCheckEnv(t)
	hc := fastCheck()
	hc.BodyContains = "OK"
	g := r.Group("site", []PoolConfig{pool(t, "p", hc, h.URL)}, Outlier{})
	o := g.Pools()[0].Origins()[0]
	waitFor(t, "origin down", func() bool { return !o.Available() })
	old := r.groups["site"].checkers[originKey{"p", h.URL}]

	// Same config: the checker keeps running.
	r.Group("site", []PoolConfig{pool(t, "p", hc, h.URL)}, Outlier{})
	if r.groups["site"].checkers[originKey{"p", h.URL}] != old {
		t.Fatal("checker restarted though the check did not change")
	}
	// Changed check: the old checker stops, the new one finds the origin healthy, and the
	// state (down) carried over until then.
	hc2 := *hc
	hc2.BodyContains = "DEGRADED"
	g2 := r.Group("site", []PoolConfig{pool(t, "p", &hc2, h.URL)}, Outlier{})
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		t.Fatal("old checker still running after the check changed")
	}
	o2 := g2.Pools()[0].Origins()[0]
	waitFor(t, "origin up under the new check", func() bool { return o2.Available() })

	// Check removed: checker stopped, origin up whatever it was.
	h.mode.Store("fail")
	waitFor(t, "origin down again", func() bool { return !o2.Available() })
	cur := r.groups["site"].checkers[originKey{"p", h.URL}]
	g3 := r.Group("site", []PoolConfig{pool(t, "p", nil, h.URL)}, Outlier{})
	<-cur.done
	if o3 := g3.Pools()[0].Origins()[0]; !o3.Available() {
		t.Fatal("origin without checks not available")
	}
	if s := statusOf(t, r, "site", h.URL); s.LastCheck != nil || s.State != StateHealthy {
		t.Fatalf("status after removing the check: %+v", s)
	}
	waitLog(t, log, `"reason":"active checks removed"`)
}

func TestRetainStopsCheckers(t *testing.T) {
	h := newHealthServer(t)
	r, _ := newCheckEnv(t)
	r.Group("keep", []PoolConfig{pool(t, "p", fastCheck(), h.URL)}, Outlier{})
	r.Group("drop", []PoolConfig{pool(t, "p", fastCheck(), h.URL+"/a"), pool(t, "q", fastCheck(), h.URL+"/b")}, Outlier{})
	var dropped []*checker
	for _, c := range r.groups["drop"].checkers {
		dropped = append(dropped, c)
	}
	if len(dropped) != 2 {
		t.Fatalf("%d checkers for drop, want 2", len(dropped))
	}
	r.Retain([]string{"keep"})
	for _, c := range dropped {
		select {
		case <-c.done:
		default:
			t.Fatal("Retain returned with a checker of a dropped group still running")
		}
	}
	st := r.Status()
	if len(st) != 1 || st[0].Key != "keep" {
		t.Fatalf("status after Retain: %+v", st)
	}
	if len(r.groups["keep"].checkers) != 1 {
		t.Fatal("Retain stopped a kept group's checker")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	h := newHealthServer(t)
	h.mode.Store("slow") // checkers blocked in a request must stop too
	r := NewRegistry(RegistryOptions{Logger: slog.New(slog.DiscardHandler)})
	var pools []PoolConfig
	for _, name := range []string{"a", "b", "c"} {
		pools = append(pools, pool(t, name, fastCheck(), h.URL+"/"+name, h.URL+"/"+name+"2"))
	}
	g := r.Group("s1", pools, Outlier{})
	r.Group("s2", pools[:1], Outlier{})
	waitFor(t, "checks running", func() bool { return h.checks.Load() >= 8 })
	r.Close()
	r.Close() // idempotent
	for _, e := range r.groups {
		if len(e.checkers) != 0 {
			t.Fatal("checkers left after Close")
		}
	}
	// After Close groups still build and pick, without starting checkers.
	if g2 := r.Group("s3", pools, Outlier{}); g2.Pick(nil) == nil || g.Pick(nil) == nil {
		t.Fatal("no pick after Close")
	}
	h.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}
