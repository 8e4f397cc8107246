package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/snapshot"
	"rhizome/internal/upstream"
)

// passOrigin answers every request with its name, uncacheable, so that every client
// request reaches an origin.
func passOrigin(t *testing.T, name string, fail *atomic.Bool) *origin {
	return slowPassOrigin(t, name, fail, 0)
}

// slowPassOrigin is passOrigin taking delay per request, as real origins do: with equal
// instant origins P2C rightly keeps choosing the one measured fastest.
func slowPassOrigin(t *testing.T, name string, fail *atomic.Bool, delay time.Duration) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		time.Sleep(delay)
		if fail != nil && fail.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, name)
	})
}

// kill stops an origin abruptly: no new connections, open ones reset mid-request.
func kill(o *origin) {
	o.Listener.Close()
	o.CloseClientConnections()
}

func originStatus(e *env, url string) (upstream.OriginStatus, bool) {
	for _, g := range e.h.Upstreams() {
		for _, p := range g.Pools {
			for _, o := range p.Origins {
				if o.URL == url {
					return o, true
				}
			}
		}
	}
	return upstream.OriginStatus{}, false
}

// TestKillOriginUnderLoad: an origin dies while a few hundred requests per second flow; no
// client GET fails, and the dead origin is soon out of rotation.
func TestKillOriginUnderLoad(t *testing.T) {
	a, b := slowPassOrigin(t, "a", nil, 5*time.Millisecond), slowPassOrigin(t, "b", nil, 5*time.Millisecond)
	e := newEnv(t, []string{a.URL, b.URL})
	const rate, dur = 300, 2 * time.Second
	var beforeKill int
	var failed, total atomic.Int32
	var errs sync.Map
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	start := time.Now()
	killed := false
	for i := 0; time.Since(start) < dur; i++ {
		<-tick.C
		if !killed && time.Since(start) > dur/4 {
			beforeKill = totalCount(a)
			kill(a)
			killed = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(1)
			resp, err := client.Get(fmt.Sprintf("%s/pass/%d", e.proxy.URL, i))
			if err != nil {
				failed.Add(1)
				errs.Store(err.Error(), true)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				errs.Store(resp.Status+" "+resp.Header.Get("Cache-Status"), true)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		var kinds []string
		errs.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
		t.Fatalf("%d of %d client GETs failed after an origin was killed: %v", failed.Load(), total.Load(), kinds)
	}
	if beforeKill < int(total.Load())/4/5 {
		t.Fatalf("origin a served %d of the ~%d requests before the kill: the test did not load it", beforeKill, total.Load()/4)
	}
	st, _ := originStatus(e, a.URL)
	if after := int(st.Requests) - beforeKill; after > 20 {
		t.Fatalf("%d attempts reached the dead origin after the kill; it should be out within a few: %+v", after, st)
	}
	t.Logf("%d requests, 0 failed; origin a served %d before the kill; after: %+v", total.Load(), beforeKill, st)
}

// TestBlackHoleOriginFailsOverWithinFirstByteTimeout: an origin that accepts connections and
// never answers costs one first-byte timeout, then the fallback pool answers.
func TestBlackHoleOriginFailsOverWithinFirstByteTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() { // accept and hold, never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	good := passOrigin(t, "fallback", nil)
	const ttfb = 300 * time.Millisecond
	e := newEnv(t, nil, func(s *snapshot.SiteSpec) {
		s.Pools = []snapshot.PoolSpec{
			{Name: "primary", Origins: []snapshot.OriginSpec{{URL: "http://" + ln.Addr().String()}}},
			{Name: "fallback", Origins: []snapshot.OriginSpec{{URL: good.URL}}},
		}
		s.Timeouts.FirstByte = ttfb
	})
	start := time.Now()
	resp, body := e.get(t, "/x")
	took := time.Since(start)
	if resp.StatusCode != 200 || body != "fallback" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if took < ttfb || took > ttfb+time.Second {
		t.Fatalf("failover took %v, want about the first-byte timeout %v", took, ttfb)
	}
}

// TestFailingOriginEjectedThenReadmitted: an origin answering 500s is ejected by passive
// detection (its clients retried elsewhere), and comes back once healthy.
func TestFailingOriginEjectedThenReadmitted(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	a, b := passOrigin(t, "a", &sick), passOrigin(t, "b", nil)
	e := newEnv(t, nil, func(s *snapshot.SiteSpec) {
		// a alone in the primary pool, so that every request tries it first until it
		// is ejected, and again once the ejection ends.
		s.Pools = []snapshot.PoolSpec{
			{Name: "primary", Origins: []snapshot.OriginSpec{{URL: a.URL}}},
			{Name: "fallback", Origins: []snapshot.OriginSpec{{URL: b.URL}}},
		}
		s.Outlier = snapshot.OutlierSpec{ConsecutiveFailures: 3, BaseEjection: 300 * time.Millisecond}
	})
	for i := range 40 {
		resp, body := e.get(t, fmt.Sprintf("/r/%d", i))
		if resp.StatusCode != 200 || body != "b" {
			t.Fatalf("request %d: %d %q; a sick origin's 500 reached the client", i, resp.StatusCode, body)
		}
	}
	st, _ := originStatus(e, a.URL)
	if st.Failures < 3 || st.Failures > 10 {
		t.Fatalf("sick origin took %d failed requests, want it ejected after 3 (plus a probe per ejection): %+v", st.Failures, st)
	}
	sick.Store(false)
	eventually(t, "the healed origin to serve again", func() bool {
		_, body := e.get(t, "/r/again")
		return body == "a"
	})
	if st, _ := originStatus(e, a.URL); st.State != "healthy" {
		t.Fatalf("healed origin: %+v", st)
	}
}

// TestActiveHealthCheck: a failing health check takes an origin out before any client
// request hits it, and a passing one brings it back.
func TestActiveHealthCheck(t *testing.T) {
	var down atomic.Bool
	a := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if down.Load() {
				http.Error(w, "maintenance", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "a")
	})
	b := passOrigin(t, "b", nil)
	e := newEnv(t, nil, func(s *snapshot.SiteSpec) {
		check := &snapshot.HealthCheckSpec{Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 2, Fall: 2, BodyContains: "ok"}
		s.Pools = []snapshot.PoolSpec{{Name: "primary", Origins: []snapshot.OriginSpec{{URL: a.URL}, {URL: b.URL}}, HealthCheck: check}}
	})
	down.Store(true)
	eventually(t, "origin a marked unhealthy", func() bool { st, _ := originStatus(e, a.URL); return st.State == "unhealthy" })
	before := a.count("/x")
	for range 20 {
		if _, body := e.get(t, "/x"); body != "b" {
			t.Fatalf("unhealthy origin served %q", body)
		}
	}
	if a.count("/x") != before {
		t.Fatal("client requests reached an origin whose health check fails")
	}
	down.Store(false)
	eventually(t, "origin a back", func() bool { st, _ := originStatus(e, a.URL); return st.State == "healthy" })
	eventually(t, "origin a serving", func() bool { _, body := e.get(t, "/x"); return body == "a" })
	st, _ := originStatus(e, a.URL)
	if st.LastCheck == nil || !st.LastCheckOK {
		t.Fatalf("status lacks the last check: %+v", st)
	}
}

// TestAllDownBlackHoleTimesOut: with every origin silent, the client gets a 504 with a
// request id after the attempts' first-byte timeouts, not a hang.
func TestAllDownBlackHoleTimesOut(t *testing.T) {
	var lns []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		lns = append(lns, "http://"+ln.Addr().String())
	}
	e := newEnv(t, lns, func(s *snapshot.SiteSpec) { s.Timeouts.FirstByte = 200 * time.Millisecond })
	start := time.Now()
	resp, body := e.get(t, "/silent")
	took := time.Since(start)
	wantStatus(t, resp, http.StatusGatewayTimeout, "detail=origin-timeout")
	if !strings.Contains(body, "request id") {
		t.Fatalf("error page %q", body)
	}
	// Two origins, three attempts at most: at most 3 x 200ms plus slack.
	if took > 1500*time.Millisecond {
		t.Fatalf("took %v", took)
	}
}

// TestRetryBudgetBoundsRetries: with a budget of 10% and no floor, a dead origin's
// failures are retried for at most about a tenth of the requests.
func TestRetryBudgetBoundsRetries(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	a := passOrigin(t, "a", &sick)
	b := passOrigin(t, "b", &sick)
	e := newEnv(t, []string{a.URL, b.URL}, func(s *snapshot.SiteSpec) {
		s.Retry = snapshot.RetrySpec{Attempts: 3, BudgetPercent: 10, MinPerSecond: 0.0001}
		s.Outlier = snapshot.OutlierSpec{ConsecutiveFailures: -1}
	})
	const n = 200
	for i := range n {
		e.get(t, fmt.Sprintf("/b/%d", i))
	}
	attempts := 0
	for i := range n {
		attempts += a.count(fmt.Sprintf("/b/%d", i)) + b.count(fmt.Sprintf("/b/%d", i))
	}
	retries := attempts - n
	if retries > n/10+5 {
		t.Fatalf("%d retries for %d requests: the 10%% budget did not hold", retries, n)
	}
	t.Logf("%d requests, %d retries", n, retries)
}

func totalCount(o *origin) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.counts {
		n += c
	}
	return n
}
