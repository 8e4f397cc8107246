package dns

import (
	"net/netip"
	"sync"
	"time"
)

const (
	// defaultRateLimit is Config.RateLimit's default: responses per second per client
	// prefix, far above what one resolver needs for one zone, far below a flood.
	defaultRateLimit = 100
	// maxRateEntries bounds the client prefixes the limiter remembers (about 100 bytes
	// each): past it, the least recently seen half is forgotten.
	maxRateEntries = 100_000
	// rateGeneration is how long a prefix not seen is remembered at least.
	rateGeneration = time.Minute
)

// verdict is what the rate limiter says about one UDP response.
type verdict int

const (
	allow verdict = iota // send the response
	slip                 // send an empty TC=1 response instead: a real client retries over TCP
	drop                 // send nothing
)

// rateLimiter is response rate limiting against reflection and amplification: a token
// bucket per client /24 (IPv4) or /56 (IPv6), refilled at rate per second up to rate.
// Over the limit, every other response slips and the others are dropped. The buckets
// live in two generations of maps: a lookup moves a bucket into the current one, and
// when the current one is half of maxRateEntries full or a generation old, the previous
// one is forgotten (a forgotten bucket restarts full).
type rateLimiter struct {
	rate    float64
	max     int
	now     func() time.Time
	mu      sync.Mutex
	cur     map[netip.Prefix]*bucket
	prev    map[netip.Prefix]*bucket
	rotated time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
	over   uint64 // responses over the limit since it was last under
}

func newRateLimiter(rate int) *rateLimiter {
	return &rateLimiter{rate: float64(rate), max: maxRateEntries, now: time.Now,
		cur: map[netip.Prefix]*bucket{}, prev: map[netip.Prefix]*bucket{}}
}

// clientPrefix is the prefix a client's responses are counted under.
func clientPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 56
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // an invalid address gives the zero prefix: one shared bucket
	return p
}

// check takes one token for a response to client and says what to do with it.
func (l *rateLimiter) check(client netip.Addr) verdict {
	key := clientPrefix(client)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.cur[key]
	if b == nil {
		if b = l.prev[key]; b != nil {
			delete(l.prev, key)
		} else {
			b = &bucket{tokens: l.rate, last: now}
		}
		if len(l.cur) >= l.max/2 || now.Sub(l.rotated) >= rateGeneration {
			l.prev, l.cur, l.rotated = l.cur, make(map[netip.Prefix]*bucket), now
		}
		l.cur[key] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(l.rate, b.tokens+elapsed*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		b.over = 0
		return allow
	}
	b.over++
	if b.over%2 == 1 {
		return slip
	}
	return drop
}

// size is how many prefixes the limiter remembers.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur) + len(l.prev)
}
