package upstream

import (
	"bytes"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// splitmix returns a deterministic generator of uniform uint64s, safe for concurrent use.
func splitmix(seed uint64) func() uint64 {
	var state atomic.Uint64
	state.Store(seed)
	return func() uint64 {
		z := state.Add(0x9E3779B97F4A7C15)
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		return z ^ (z >> 31)
	}
}

// seq returns the values in order, then repeats the last. Not for concurrent use.
func seq(vals ...uint64) func() uint64 {
	i := 0
	return func() uint64 {
		v := vals[min(i, len(vals)-1)]
		i++
		return v
	}
}

// waitFor polls cond until it holds, failing the test after a bound: the way to wait for
// goroutines (checkers) without a bare sleep.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is a registry on a fake clock and deterministic rand, with its log captured.
type testEnv struct {
	clk *fakeClock
	reg *Registry
	log *syncBuffer
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	e := &testEnv{clk: newFakeClock(), log: &syncBuffer{}}
	e.reg = NewRegistry(RegistryOptions{
		Now:    e.clk.Now,
		Rand:   splitmix(42),
		Logger: slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(e.reg.Close)
	return e
}

// pools builds pool configs from names and "url*weight" lists (weight 1 when omitted).
func pool(t testing.TB, name string, check *HealthCheck, origins ...string) PoolConfig {
	t.Helper()
	pc := PoolConfig{Name: name, Check: check}
	for _, o := range origins {
		w := 1
		if i := len(o) - 2; i > 0 && o[i] == '*' {
			w = int(o[i+1] - '0')
			o = o[:i]
		}
		pc.Origins = append(pc.Origins, OriginConfig{URL: mustURL(t, o), Weight: w})
	}
	return pc
}

// origin returns the origin of g with the given URL.
func origin(t testing.TB, g *Group, raw string) *Origin {
	t.Helper()
	for _, p := range g.Pools() {
		for _, o := range p.Origins() {
			if o.URL().String() == raw {
				return o
			}
		}
	}
	t.Fatalf("no origin %s", raw)
	return nil
}

// fail ends n attempts on o with Failure.
func fail(o *Origin, n int) {
	for range n {
		o.Begin().End(Failure, time.Millisecond)
	}
}

// statusOf returns the status of the origin raw of group key.
func statusOf(t testing.TB, r *Registry, key, raw string) OriginStatus {
	t.Helper()
	for _, g := range r.Status() {
		if g.Key != key {
			continue
		}
		for _, p := range g.Pools {
			for _, o := range p.Origins {
				if o.URL == raw {
					return o
				}
			}
		}
	}
	t.Fatalf("no status for %s %s", key, raw)
	return OriginStatus{}
}
