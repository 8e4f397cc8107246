package upstream

import (
	"testing"
	"time"
)

func benchGroup(b *testing.B) (*Group, *Origin) {
	e := newTestEnv(b)
	e.reg.clk.now = time.Now // the real clock's cost is part of Pick's
	g := e.reg.Group("site", []PoolConfig{
		pool(b, "primary", nil, "http://p1*3", "http://p2"),
		pool(b, "fallback", nil, "http://f1", "http://f2"),
	}, Outlier{})
	for _, p := range g.Pools() {
		for _, o := range p.Origins() {
			o.Begin().End(Success, 10*time.Millisecond)
		}
	}
	return g, origin(b, g, "http://p1")
}

// BenchmarkPick is the cache-miss path's choice: 4 origins in 2 pools, all healthy.
func BenchmarkPick(b *testing.B) {
	g, _ := benchGroup(b)
	b.ReportAllocs()
	for b.Loop() {
		if g.Pick(nil) == nil {
			b.Fatal("nil pick")
		}
	}
}

// BenchmarkPickRetry picks with the first choice tried and the primary pool ejected: the
// worst case of a retry.
func BenchmarkPickRetry(b *testing.B) {
	g, p1 := benchGroup(b)
	fail(origin(b, g, "http://p2"), 5)
	tried := []*Origin{p1}
	b.ReportAllocs()
	for b.Loop() {
		if g.Pick(tried) == nil {
			b.Fatal("nil pick")
		}
	}
}

// BenchmarkPickParallel measures contention: the state Pick reads is shared atomics.
func BenchmarkPickParallel(b *testing.B) {
	g, _ := benchGroup(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o := g.Pick(nil)
			o.Begin().End(Success, 10*time.Millisecond)
		}
	})
}

// BenchmarkAttempt is Begin and End of one successful attempt.
func BenchmarkAttempt(b *testing.B) {
	_, o := benchGroup(b)
	b.ReportAllocs()
	for b.Loop() {
		o.Begin().End(Success, 10*time.Millisecond)
	}
}

func BenchmarkRetryBudget(b *testing.B) {
	bud := NewRetryBudget(0.2, 10, nil)
	b.ReportAllocs()
	for b.Loop() {
		bud.Request()
		bud.TryRetry()
	}
}
