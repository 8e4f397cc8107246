// Package upstream chooses which origin serves a request that the cache cannot answer.
//
// A Pool is an ordered set of origins for one site. It is built once per compiled snapshot and
// read concurrently by every request; it must never block and never do I/O. Health checks,
// outlier ejection and latency-aware choice grow here (see the origin-pool issue); for now a
// Pool spreads requests by weighted round robin and lets the proxy skip origins it already
// tried for the same request.
package upstream

import (
	"net/url"
	"sync/atomic"
)

// Origin is one origin server: where to send requests, and its share of them.
type Origin struct {
	URL    *url.URL // scheme and host (and optional path prefix); immutable
	Weight int      // relative share, 1..100
}

// Pool is a site's origins. Safe for concurrent use; the origin list is immutable.
type Pool struct {
	origins []*Origin
	// ring repeats each origin's index Weight times, so that a plain counter gives weighted
	// round robin without locks. Weights are capped at 100 by validation, so the ring is small.
	ring []int
	next atomic.Uint64
}

// NewPool returns a pool over origins, which must be non-empty with weights in 1..100
// (the snapshot compiler checks both).
func NewPool(origins []*Origin) *Pool {
	p := &Pool{origins: origins}
	for i, o := range origins {
		w := max(o.Weight, 1)
		for range w {
			p.ring = append(p.ring, i)
		}
	}
	// Interleave would be nicer for large weights, but with a shared counter across requests
	// the long-run shares are exact either way.
	return p
}

// Origins returns the pool's origins in configured order. Callers must not modify it.
func (p *Pool) Origins() []*Origin { return p.origins }

// Pick returns the next origin by weighted round robin, skipping any in tried (origins that
// already failed this request). It returns nil when every origin has been tried.
func (p *Pool) Pick(tried []*Origin) *Origin {
	if len(p.ring) == 0 {
		return nil
	}
	start := p.next.Add(1)
	for i := range uint64(len(p.ring)) {
		o := p.origins[p.ring[(start+i)%uint64(len(p.ring))]]
		if !contains(tried, o) {
			return o
		}
	}
	return nil
}

func contains(list []*Origin, o *Origin) bool {
	for _, x := range list {
		if x == o {
			return true
		}
	}
	return false
}
