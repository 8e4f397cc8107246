package upstream

import (
	"math"
	"sync/atomic"
	"time"
)

// Group is the live upstream of one site: its pools in order. The configuration is
// immutable; the origins' state behind it is shared with every Group the Registry builds for
// the same key. Safe for concurrent use.
type Group struct {
	key    string
	pools  []*Pool
	budget *RetryBudget
	clk    *clock
	panics *atomic.Uint64 // picks made in panic mode, shared across rebuilds of the key
}

// Key returns the key the Group was built under (the site).
func (g *Group) Key() string { return g.key }

// Pools returns the pools in order. Callers must not modify the slice.
func (g *Group) Pools() []*Pool { return g.pools }

// Budget returns the site's retry budget: the proxy deposits with Request on every first
// attempt and asks TryRetry before every retry.
func (g *Group) Budget() *RetryBudget { return g.budget }

// Pick chooses the origin for the next attempt, skipping those in tried (the same request's
// earlier attempts; an origin of an older Group of the same site counts as its successor).
// It returns nil when every origin has been tried.
//
// Pools are tried in order: the first pool with an available untried origin wins, so a
// fallback pool sees traffic only while no origin of the pools before it is available.
// Within the pool, power of two choices: two distinct candidates drawn at random in
// proportion to their weights, scored
//
//	ewma_latency * (1 + inflight/weight)
//
// and the first drawn wins unless the second's score is clearly (20%) lower. The EWMA is
// decayed since its last observation (see Attempt.End); an origin with none scores as the
// pool's lowest EWMA, or 1ms when no origin of the pool has one. Weights act in the draw
// (equal origins on an idle site share traffic in proportion to their weights) and as
// capacity in the score (under load, in-flight requests are counted per unit of weight), so
// traffic splits by weight at any load while a clearly slower or busier origin gets less.
//
// When no untried origin of any pool is available, Pick fails open (panic mode, as Envoy
// does): it chooses among the untried origins of the first pool that has any, as if all
// were healthy. A health check can be wrong (a broken check path, a network partition
// between checker and origin only), and a try is better than a certain 502; the outlier
// detector still ejects what really fails.
//
// Never blocks, does not allocate for pools of up to 32 origins, O(origins). A nil or
// empty Group picks nil.
func (g *Group) Pick(tried []*Origin) *Origin {
	if g == nil || len(g.pools) == 0 {
		return nil
	}
	now := g.clk.now().UnixNano()
	for _, p := range g.pools {
		if o := p.pick(tried, now, true, g.clk.rand); o != nil {
			return o
		}
	}
	for _, p := range g.pools {
		if o := p.pick(tried, now, false, g.clk.rand); o != nil {
			g.panics.Add(1)
			return o
		}
	}
	return nil
}

// PickAvailable is Pick without panic mode: it returns nil rather than an origin that is
// unhealthy or ejected. Retries use it, so that a request that already failed once is not
// sent on to an origin known to be down, unless everything is.
func (g *Group) PickAvailable(tried []*Origin) *Origin {
	if g == nil {
		return nil
	}
	now := g.clk.now().UnixNano()
	for _, p := range g.pools {
		if o := p.pick(tried, now, true, g.clk.rand); o != nil {
			return o
		}
	}
	return nil
}

// Pool is one origin pool of a Group. Immutable.
type Pool struct {
	name    string
	origins []*Origin
	check   *HealthCheck // with defaults; nil = no active checks
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Origins returns the pool's origins in configured order. Callers must not modify the slice.
func (p *Pool) Origins() []*Origin { return p.origins }

// Check returns the pool's active health check with defaults applied, or nil when the pool
// has none. Callers must not modify it.
func (p *Pool) Check() *HealthCheck { return p.check }

// defaultEWMA is the score latency of a pool where no origin has an observation yet: any
// positive constant would do, since all candidates then share it.
const defaultEWMA = float64(time.Millisecond)

// candidate is one origin Pick may choose, with what P2C needs to know of it.
type candidate struct {
	idx    int // in Pool.origins
	weight int
	score  float64
}

// pick returns the pool's choice among origins not in tried (and available, if
// healthyOnly), or nil when there is none.
func (p *Pool) pick(tried []*Origin, now int64, healthyOnly bool, rnd func() uint64) *Origin {
	// A fixed array keeps the candidates on the stack for any sane pool; larger pools
	// still work, at the cost of one allocation.
	var buf [32]candidate
	cs := buf[:0]
	lowest := math.Inf(1)
	for i, o := range p.origins {
		e := o.st.ewmaNow(now)
		if e > 0 && e < lowest {
			lowest = e
		}
		if triedAlready(tried, o) || (healthyOnly && !o.st.available(now)) {
			continue
		}
		// The score is provisional: e is 0 when unknown, fixed once lowest is known.
		cs = append(cs, candidate{idx: i, weight: o.weight, score: e})
	}
	if len(cs) == 0 {
		return nil
	}
	if math.IsInf(lowest, 1) {
		lowest = defaultEWMA
	}
	for i := range cs {
		c := &cs[i]
		if c.score <= 0 {
			c.score = lowest
		}
		c.score = loadScore(c.score, p.origins[c.idx].st.inflight.Load(), c.weight)
	}
	return p.origins[cs[p2c(cs, rnd)].idx]
}

// loadScore is the cost of sending one more request to an origin: its expected latency,
// stretched by the requests it already has in flight per unit of weight. At idle the
// scores are the latencies alone, so the weighted draw decides between equals; under load
// an origin of weight 3 carries three requests for each one of a weight-1 peer before
// their scores meet.
func loadScore(ewma float64, inflight int64, weight int) float64 {
	return ewma * (1 + float64(max(inflight, 0))/float64(max(weight, 1)))
}

// clearlyBetter is how much lower the second candidate's score must be to win over the
// first drawn. Latencies of a few hundred microseconds jitter by tens of percent; without
// a margin, noise decides, and the origin measured marginally faster takes nearly all the
// traffic of an idle site (seen in bench/failover.sh: 99.7% to one of two equal origins).
const clearlyBetter = 0.8

// p2c draws two distinct candidates in proportion to their weights and returns the index of
// the first drawn unless the second is clearly better (score below clearlyBetter times the
// first's), or -1 when cs is empty. Pure.
func p2c(cs []candidate, rnd func() uint64) int {
	switch len(cs) {
	case 0:
		return -1
	case 1:
		return 0
	}
	total := 0
	for _, c := range cs {
		total += c.weight
	}
	a := weightedDraw(cs, rnd()%uint64(total), -1)
	b := weightedDraw(cs, rnd()%uint64(total-cs[a].weight), a)
	if cs[b].score < clearlyBetter*cs[a].score {
		return b
	}
	return a
}

// weightedDraw maps r in [0, sum of weights except skip's) to a candidate index.
func weightedDraw(cs []candidate, r uint64, skip int) int {
	last := -1
	for i, c := range cs {
		if i == skip {
			continue
		}
		if r < uint64(c.weight) {
			return i
		}
		r -= uint64(c.weight)
		last = i
	}
	return last // unreachable with r in range; defensive
}

func triedAlready(tried []*Origin, o *Origin) bool {
	for _, t := range tried {
		if t == o || (t != nil && t.st == o.st) {
			return true
		}
	}
	return false
}
