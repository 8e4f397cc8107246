package upstream

import (
	"math"
	"testing"
	"time"
)

func TestP2C(t *testing.T) {
	c := func(w int, score float64) candidate { return candidate{weight: w, score: score} }
	tests := []struct {
		name string
		cs   []candidate
		rand []uint64
		want int
	}{
		{"empty", nil, []uint64{0}, -1},
		{"single", []candidate{c(1, 5)}, []uint64{0}, 0},
		{"second drawn is lower", []candidate{c(1, 2), c(1, 1), c(1, 3)}, []uint64{0, 0}, 1},
		{"first drawn is lower", []candidate{c(1, 2), c(1, 1), c(1, 3)}, []uint64{1, 1}, 1},
		{"lower of the two drawn, not of all", []candidate{c(1, 2), c(1, 1), c(1, 3)}, []uint64{0, 1}, 0},
		{"tie keeps the first drawn", []candidate{c(1, 1), c(1, 1)}, []uint64{1, 0}, 1},
		// Weights 1,3: r%4 = 0 draws #0, 1..3 draw #1.
		{"weighted draw lands in heavy", []candidate{c(1, 9), c(3, 9)}, []uint64{3, 0}, 1},
		{"weighted draw lands in light", []candidate{c(1, 9), c(3, 9)}, []uint64{0, 0}, 0},
		// Weights 2,1,1: first r%4=3 draws #2; second r%3 over {#0:2,#1:1}: 2 draws #1.
		{"second draw skips the first", []candidate{c(2, 5), c(1, 5), c(1, 4)}, []uint64{3, 2}, 2},
		{"second draw skips the first, lower", []candidate{c(2, 5), c(1, 3), c(1, 4)}, []uint64{3, 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p2c(tt.cs, seq(tt.rand...)); got != tt.want {
				t.Fatalf("p2c = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestP2CDistinctCandidates(t *testing.T) {
	// Whatever the random values, the two draws differ, so the better of two always wins
	// over the worse.
	cs := []candidate{{weight: 5, score: 1}, {weight: 1, score: 2}}
	r := splitmix(1)
	for range 1000 {
		if got := p2c(cs, r); got != 0 {
			t.Fatalf("p2c chose the worse of two")
		}
	}
}

func TestLoadScore(t *testing.T) {
	tests := []struct {
		ewma     float64
		inflight int64
		weight   int
		want     float64
	}{
		{10, 0, 1, 10},
		{10, 1, 1, 20},
		{10, 3, 2, 25},  // 3 in flight per 2 units of weight: 1.5 each
		{10, 6, 3, 30},  // a weight-3 origin with 6 in flight scores as a weight-1 with 2
		{10, -1, 1, 10}, // never below idle
		{10, 0, 0, 10},  // weight clamped to 1
	}
	for _, tt := range tests {
		if got := loadScore(tt.ewma, tt.inflight, tt.weight); got != tt.want {
			t.Errorf("loadScore(%v, %d, %d) = %v, want %v", tt.ewma, tt.inflight, tt.weight, got, tt.want)
		}
	}
}

// TestPickIdleSharesEqualOrigins: near-equal latencies (jitter) must not send a whole idle
// site's traffic to the origin measured marginally faster; weights set the shares.
func TestPickIdleSharesEqualOrigins(t *testing.T) {
	cs := func() []candidate {
		return []candidate{{idx: 0, weight: 3, score: 1.00e6}, {idx: 1, weight: 1, score: 1.15e6}}
	}
	var seed uint64 = 1
	rnd := func() uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return seed >> 11 }
	counts := [2]int{}
	for range 40000 {
		counts[p2c(cs(), rnd)]++
	}
	share := float64(counts[0]) / 40000
	if share < 0.70 || share > 0.80 {
		t.Fatalf("weight 3 vs 1 at 15%% latency difference: share %.3f, want about 0.75", share)
	}
	// A clearly slower origin (2x) loses whenever it is compared.
	slow := []candidate{{idx: 0, weight: 1, score: 1e6}, {idx: 1, weight: 1, score: 2e6}}
	counts = [2]int{}
	for range 10000 {
		counts[p2c(slow, rnd)]++
	}
	if counts[1] != 0 {
		t.Fatalf("a 2x slower origin won %d of 10000", counts[1])
	}
}

func TestPickPoolsInOrder(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{
		pool(t, "primary", nil, "http://p1", "http://p2"),
		pool(t, "fallback", nil, "http://f1", "http://f2"),
	}, Outlier{})
	p1, p2 := origin(t, g, "http://p1"), origin(t, g, "http://p2")

	for range 1000 {
		if o := g.Pick(nil); o.Pool() != "primary" {
			t.Fatalf("picked %s of %s with primary available", o.URL(), o.Pool())
		}
	}
	// One primary origin ejected: the other primary one takes everything.
	fail(p1, 5)
	for range 100 {
		if o := g.Pick(nil); o != p2 {
			t.Fatalf("picked %s, want p2", o.URL())
		}
	}
	// Both ejected: the fallback pool, never panic mode.
	fail(p2, 5)
	for range 1000 {
		if o := g.Pick(nil); o.Pool() != "fallback" {
			t.Fatalf("picked %s of %s with primary ejected", o.URL(), o.Pool())
		}
	}
	// Ejection over: back to primary.
	e.clk.Advance(DefaultBaseEjection)
	if o := g.Pick(nil); o.Pool() != "primary" {
		t.Fatalf("picked %s after re-admission, want primary", o.URL())
	}
	if n := e.reg.Status()[0].PanicPicks; n != 0 {
		t.Fatalf("panic picks = %d, want 0", n)
	}
}

func TestPickFallbackWhenPrimaryTried(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{
		pool(t, "primary", nil, "http://p1"),
		pool(t, "fallback", nil, "http://f1"),
	}, Outlier{})
	p1, f1 := origin(t, g, "http://p1"), origin(t, g, "http://f1")
	if o := g.Pick([]*Origin{p1}); o != f1 {
		t.Fatalf("Pick(tried p1) = %v, want f1", o.URL())
	}
}

func TestPickSkipsTried(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a", "http://b*9", "http://c")}, Outlier{})
	a, b, c := origin(t, g, "http://a"), origin(t, g, "http://b"), origin(t, g, "http://c")
	for range 200 {
		if o := g.Pick([]*Origin{b, a}); o != c {
			t.Fatalf("Pick skipping a, b = %s", o.URL())
		}
	}
	if o := g.Pick([]*Origin{a, b, c}); o != nil {
		t.Fatalf("Pick with all tried = %s, want nil", o.URL())
	}
	// An origin of the previous Group of the same site counts as tried in the new one.
	g2 := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a", "http://b*9", "http://c")}, Outlier{})
	if o := g2.Pick([]*Origin{a, b}); o.URL().String() != "http://c" {
		t.Fatalf("Pick on new group skipping old a, b = %s", o.URL())
	}
	var empty Group
	if o := empty.Pick(nil); o != nil {
		t.Fatal("empty group picked an origin")
	}
}

func TestPickPanicMode(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{
		pool(t, "primary", nil, "http://p1", "http://p2"),
		pool(t, "fallback", nil, "http://f1"),
	}, Outlier{})
	all := []*Origin{origin(t, g, "http://p1"), origin(t, g, "http://p2"), origin(t, g, "http://f1")}
	for _, o := range all {
		fail(o, 5)
		if o.Available() {
			t.Fatalf("%s available after 5 failures", o.URL())
		}
	}
	seen := map[*Origin]int{}
	for range 200 {
		o := g.Pick(nil)
		if o == nil || o.Pool() != "primary" {
			t.Fatalf("panic pick = %v, want a primary origin", o)
		}
		seen[o]++
	}
	if len(seen) != 2 {
		t.Fatalf("panic mode used %d primary origins, want both", len(seen))
	}
	// The primary pool tried out: the next pool, still in panic mode.
	if o := g.Pick(all[:2]); o != all[2] {
		t.Fatalf("panic pick with primary tried = %v, want f1", o)
	}
	if o := g.Pick(all); o != nil {
		t.Fatalf("pick with all tried = %s", o.URL())
	}
	if n := e.reg.Status()[0].PanicPicks; n != 201 {
		t.Fatalf("panic picks = %d, want 201", n)
	}
}

func TestPickEqualWeightsIdleIsUniform(t *testing.T) {
	// No load, no EWMA: every score ties, so the weighted draw alone decides.
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a", "http://b", "http://c", "http://d")}, Outlier{})
	counts := map[string]int{}
	const n = 20000
	for range n {
		counts[g.Pick(nil).URL().Host]++
	}
	for h, c := range counts {
		if share := float64(c) / n; math.Abs(share-0.25) > 0.02 {
			t.Errorf("%s share %.3f, want 0.25±0.02", h, share)
		}
	}
}

// simulate runs a closed loop of concurrency requests in flight on the fake clock: each pick
// is followed by the end of the oldest attempt, whose latency is latency(origin). It returns
// the picks per host.
func simulate(t *testing.T, e *testEnv, g *Group, picks, concurrency int, latency func(*Origin) time.Duration) map[string]int {
	t.Helper()
	type flight struct {
		a   *Attempt
		o   *Origin
		end int64
	}
	var inflight []flight
	counts := map[string]int{}
	for range picks {
		// End every attempt due by now; if still at the limit, jump to the next end.
		for len(inflight) >= concurrency {
			next := 0
			for i, f := range inflight {
				if f.end < inflight[next].end {
					next = i
				}
			}
			if d := inflight[next].end - e.clk.Now().UnixNano(); d > 0 {
				e.clk.Advance(time.Duration(d))
			}
			now := e.clk.Now().UnixNano()
			kept := inflight[:0]
			for _, f := range inflight {
				if f.end <= now {
					f.a.End(Success, latency(f.o))
				} else {
					kept = append(kept, f)
				}
			}
			inflight = kept
		}
		o := g.Pick(nil)
		counts[o.URL().Host]++
		inflight = append(inflight, flight{o.Begin(), o, e.clk.Now().UnixNano() + int64(latency(o))})
	}
	return counts
}

func TestPickWeightsUnderLoad(t *testing.T) {
	// With equal latency the weight is capacity: at equal score an origin of weight 3
	// carries three times the requests in flight, hence three times the traffic.
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a*3", "http://b*1")}, Outlier{})
	counts := simulate(t, e, g, 10000, 400, func(*Origin) time.Duration { return 50 * time.Millisecond })
	ratio := float64(counts["a"]) / float64(counts["b"])
	t.Logf("a:b = %d:%d = %.3f", counts["a"], counts["b"], ratio)
	if math.Abs(ratio-3)/3 > 0.05 {
		t.Fatalf("a:b = %d:%d = %.3f, want 3 within 5%%", counts["a"], counts["b"], ratio)
	}
}

func TestPickSlowOriginGetsLessTraffic(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://fast", "http://slow", "http://mid")}, Outlier{})
	lat := map[string]time.Duration{"fast": 10 * time.Millisecond, "mid": 20 * time.Millisecond, "slow": 100 * time.Millisecond}
	counts := simulate(t, e, g, 30000, 30, func(o *Origin) time.Duration { return lat[o.URL().Host] })
	t.Logf("picks: %v", counts)
	if !(counts["fast"] > counts["mid"] && counts["mid"] > counts["slow"]) {
		t.Fatalf("picks %v: want fast > mid > slow", counts)
	}
	if share := float64(counts["slow"]) / 30000; share > 0.1 {
		t.Fatalf("slow origin share %.3f, want < 0.1", share)
	}
}

func TestPickProbesIdleSlowOrigin(t *testing.T) {
	// An origin that was slow once and then saw no traffic is not starved for ever: its
	// EWMA decays until it is tried again.
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://fast", "http://slow")}, Outlier{})
	fast, slow := origin(t, g, "http://fast"), origin(t, g, "http://slow")
	slow.Begin().End(Success, 100*time.Millisecond)
	fast.Begin().End(Success, 10*time.Millisecond)
	for i := range 600 { // one request a second for ten minutes
		e.clk.Advance(time.Second)
		o := g.Pick(nil)
		if o == slow {
			// 100ms·e^(-t/10s) < 10ms·e^(-1s/10s) from t ≈ 24 s.
			if i < 20 || i > 30 {
				t.Fatalf("slow origin probed after %d s, want about 24 s", i+1)
			}
			return
		}
		if o != fast {
			t.Fatalf("picked %v", o)
		}
		o.Begin().End(Success, 10*time.Millisecond)
	}
	t.Fatal("slow origin never probed again in 10 minutes")
}

func TestPickUnknownEWMAScoresAsLowestKnown(t *testing.T) {
	e := newTestEnv(t)
	e.reg = NewRegistry(RegistryOptions{Now: e.clk.Now, Rand: seq(0, 0, 0, 0)})
	defer e.reg.Close()
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://known", "http://new")}, Outlier{})
	known, fresh := origin(t, g, "http://known"), origin(t, g, "http://new")
	known.Begin().End(Success, 50*time.Millisecond)
	// Equal scores (the new origin borrows 50ms): the first drawn, "known", wins the tie.
	if o := g.Pick(nil); o != known {
		t.Fatalf("picked %s, want known on a tie", o.URL())
	}
	// One request in flight on known doubles its score: the new origin wins.
	a := known.Begin()
	defer a.End(Canceled, 0)
	if o := g.Pick(nil); o != fresh {
		t.Fatalf("picked %s, want new", o.URL())
	}
}

func TestOriginAccessors(t *testing.T) {
	e := newTestEnv(t)
	hc := &HealthCheck{Path: "/h"}
	e.reg.Close() // no checker goroutines for this one
	g := e.reg.Group("site", []PoolConfig{{Name: "p", Check: hc, Origins: []OriginConfig{
		{URL: mustURL(t, "http://a"), Weight: 0},
		{URL: mustURL(t, "http://b"), Weight: 1000},
		{URL: nil, Weight: 1},
	}}}, Outlier{})
	if g.Key() != "site" || len(g.Pools()) != 1 || g.Pools()[0].Name() != "p" {
		t.Fatalf("group = %+v", g)
	}
	os := g.Pools()[0].Origins()
	if len(os) != 2 {
		t.Fatalf("%d origins, want 2 (nil URL skipped)", len(os))
	}
	if os[0].Weight() != 1 || os[1].Weight() != 100 || os[0].Pool() != "p" {
		t.Fatalf("weights %d, %d: want clamped to 1, 100", os[0].Weight(), os[1].Weight())
	}
	if c := g.Pools()[0].Check(); c == nil || c.Interval != DefaultCheckInterval || c.Method != "GET" || c.StatusMax != 399 {
		t.Fatalf("check defaults not applied: %+v", c)
	}
}
