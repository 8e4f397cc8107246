package upstream

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryBudgetRatio(t *testing.T) {
	clk := newFakeClock()
	t.Run("interleaved", func(t *testing.T) {
		b := NewRetryBudget(0.2, -1, clk.Now)
		retries := 0
		for range 1000 {
			b.Request()
			if b.TryRetry() {
				retries++
			}
		}
		if retries != 200 {
			t.Fatalf("%d retries for 1000 requests at 0.2, want 200", retries)
		}
	})
	t.Run("wave", func(t *testing.T) {
		// Every request in flight fails at once: a fifth of them may retry.
		b := NewRetryBudget(0.2, -1, clk.Now)
		for range 1000 {
			b.Request()
		}
		retries := 0
		for b.TryRetry() {
			retries++
		}
		if retries != 200 {
			t.Fatalf("%d retries after 1000 requests at 0.2, want 200", retries)
		}
	})
	t.Run("deposits decay", func(t *testing.T) {
		clk := newFakeClock()
		b := NewRetryBudget(0.2, -1, clk.Now)
		for range 1000 {
			b.Request()
		}
		clk.Advance(10 * time.Second) // one time constant: 200/e left
		retries := 0
		for b.TryRetry() {
			retries++
		}
		if retries != 73 {
			t.Fatalf("%d retries 10 s after 1000 requests, want 73 (200/e)", retries)
		}
	})
	t.Run("no ratio, no floor", func(t *testing.T) {
		b := NewRetryBudget(-1, -1, clk.Now)
		b.Request()
		if b.TryRetry() {
			t.Fatal("retry allowed by an empty budget")
		}
	})
}

func TestRetryBudgetFloor(t *testing.T) {
	clk := newFakeClock()
	b := NewRetryBudget(0, 10, clk.Now)
	count := func() int {
		n := 0
		for b.TryRetry() {
			n++
		}
		return n
	}
	if n := count(); n != 100 {
		t.Fatalf("a new budget allows %d retries, want 10 s worth = 100", n)
	}
	clk.Advance(time.Second)
	if n := count(); n != 10 {
		t.Fatalf("%d retries after 1 s, want 10", n)
	}
	clk.Advance(150 * time.Millisecond)
	if n := count(); n != 1 {
		t.Fatalf("%d retries after 150ms, want 1", n)
	}
	clk.Advance(time.Hour)
	if n := count(); n != 100 {
		t.Fatalf("%d retries after an hour, want the cap 100", n)
	}
	clk.Advance(-time.Hour) // a clock stepping back neither adds nor panics
	if n := count(); n != 0 {
		t.Fatalf("%d retries after the clock stepped back", n)
	}

	// A tiny floor still allows one retry at a time.
	b = NewRetryBudget(0, 0.01, clk.Now)
	if !b.TryRetry() || b.TryRetry() {
		t.Fatal("floor 0.01/s: want exactly one retry at start")
	}
	clk.Advance(100 * time.Second)
	if !b.TryRetry() {
		t.Fatal("floor 0.01/s: no retry after 100 s")
	}
}

func TestRetryBudgetConcurrent(t *testing.T) {
	clk := newFakeClock()
	b := NewRetryBudget(0.2, 10, clk.Now)
	var wg sync.WaitGroup
	var retries atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := range 5000 {
				b.Request()
				if i%10 == 0 {
					clk.Advance(time.Millisecond)
				}
				if b.TryRetry() {
					retries.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 40,000 requests deposit at most 8,000 tokens, the floor at most 100 + 10/s × 4 s.
	if n := retries.Load(); n < 7000 || n > 8140 {
		t.Fatalf("%d retries, want about 8000 and at most 8140", n)
	}
}

func TestGroupRetryPolicy(t *testing.T) {
	e := newTestEnv(t)
	pools := []PoolConfig{pool(t, "p", nil, "http://a")}
	g := e.reg.Group("site", pools, Outlier{})
	if got := g.Budget().Available(); got != 10*DefaultRetryMinPerSecond {
		t.Fatalf("default floor %v, want %v", got, 10*DefaultRetryMinPerSecond)
	}
	g.Budget().TryRetry()
	// Same policy: the budget survives the rebuild.
	if g2 := e.reg.Group("site", pools, Outlier{}); g2.Budget() != g.Budget() {
		t.Fatal("budget replaced though the policy did not change")
	}
	g3 := e.reg.GroupWithRetry("site", pools, Outlier{}, RetryPolicy{Ratio: 0.5, MinPerSecond: 1})
	if g3.Budget() == g.Budget() || g3.Budget().Available() != 10 {
		t.Fatalf("new policy: budget %v with %v tokens, want a new one with 10", g3.Budget(), g3.Budget().Available())
	}
	if s := e.reg.Status(); s[0].RetryTokens != 10 {
		t.Fatalf("status retry tokens %v, want 10", s[0].RetryTokens)
	}
}
