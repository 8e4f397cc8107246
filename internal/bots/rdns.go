package bots

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Resolver is the DNS a node asks to verify crawlers' addresses; *net.Resolver is one.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// rdnsResult is what reverse-and-forward DNS said about an address.
type rdnsResult struct {
	names   []string // PTR names that resolve back to the address
	settled bool     // false: DNS failed for a reason that may pass (timeout, SERVFAIL)
	expires time.Time
}

// Bounds of the lookup cache and the lookups in flight: a flood of requests claiming to
// be Googlebot from a million addresses must not grow memory or open sockets without end.
const (
	maxRDNSEntries   = 100_000
	maxRDNSInFlight  = 32
	rdnsTimeout      = 5 * time.Second
	rdnsTTL          = time.Hour
	rdnsFailureTTL   = time.Minute
	maxNamesVerified = 4
)

// rdnsCache verifies addresses by reverse-and-forward DNS and remembers the answers.
// Lookups run detached from the request that asked (bounded by rdnsTimeout), so a request
// that gives up at its budget still leaves the answer for the next.
type rdnsCache struct {
	res Resolver
	now func() time.Time

	mu       sync.Mutex
	m        map[netip.Addr]rdnsResult
	inflight map[netip.Addr]chan struct{}
	sem      chan struct{}
}

func newRDNSCache(res Resolver, now func() time.Time) *rdnsCache {
	return &rdnsCache{res: res, now: now, m: map[netip.Addr]rdnsResult{}, inflight: map[netip.Addr]chan struct{}{}, sem: make(chan struct{}, maxRDNSInFlight)}
}

// cached returns the fresh answer for a, if any.
func (c *rdnsCache) cached(a netip.Addr) (rdnsResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[a]
	if ok && c.now().After(r.expires) {
		delete(c.m, a)
		return rdnsResult{}, false
	}
	return r, ok
}

// lookup returns the answer for a, starting a lookup if none is cached or running and
// waiting for it until ctx is done. ok is false when ctx ended first or too many lookups
// are running.
func (c *rdnsCache) lookup(ctx context.Context, a netip.Addr) (rdnsResult, bool) {
	if r, ok := c.cached(a); ok {
		return r, true
	}
	c.mu.Lock()
	done, running := c.inflight[a]
	if !running {
		select {
		case c.sem <- struct{}{}:
		default:
			c.mu.Unlock()
			return rdnsResult{}, false
		}
		done = make(chan struct{})
		c.inflight[a] = done
		go c.resolve(a, done)
	}
	c.mu.Unlock()
	select {
	case <-done:
		return c.cached(a)
	case <-ctx.Done():
		return rdnsResult{}, false
	}
}

func (c *rdnsCache) resolve(a netip.Addr, done chan struct{}) {
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), rdnsTimeout)
	defer cancel()
	r := c.verify(ctx, a)
	if r.settled {
		r.expires = c.now().Add(rdnsTTL)
	} else {
		r.expires = c.now().Add(rdnsFailureTTL)
	}
	c.mu.Lock()
	if len(c.m) >= maxRDNSEntries {
		for k := range c.m { // drop an arbitrary entry: map order is random enough
			delete(c.m, k)
			break
		}
	}
	c.m[a] = r
	delete(c.inflight, a)
	c.mu.Unlock()
	close(done)
}

// verify does the lookups: PTR names of a, each resolved forward, kept when a is among
// the addresses.
func (c *rdnsCache) verify(ctx context.Context, a netip.Addr) rdnsResult {
	names, err := c.res.LookupAddr(ctx, a.String())
	if err != nil {
		return rdnsResult{settled: notFound(err)}
	}
	r := rdnsResult{settled: true}
	for i, n := range names {
		if i == maxNamesVerified {
			break
		}
		addrs, err := c.res.LookupNetIP(ctx, "ip", n)
		if err != nil {
			if !notFound(err) {
				r.settled = false
			}
			continue
		}
		for _, b := range addrs {
			if b.Unmap() == a {
				r.names = append(r.names, n)
				break
			}
		}
	}
	if len(r.names) > 0 {
		r.settled = true // one confirmed name is enough, whatever the others did
	}
	return r
}

// notFound says whether DNS answered that the name does not exist (a settled answer),
// rather than failing to answer.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
