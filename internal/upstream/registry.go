package upstream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// RegistryOptions configures a Registry. The zero value is ready for production.
type RegistryOptions struct {
	// Transport sends health checks; nil means a dedicated *http.Transport with short
	// timeouts, no proxy and no compression. It is used with RoundTrip: redirects are not
	// followed.
	Transport http.RoundTripper
	// Now is the clock of ejections, EWMA, error rates and retry budgets; default time.Now.
	// The checkers' intervals use real timers whatever it says.
	Now func() time.Time
	// Logger receives health changes; default slog.Default().
	Logger *slog.Logger
	// Rand draws Pick's candidates and the checks' jitter; default math/rand/v2. It is
	// called concurrently and must be safe for that.
	Rand func() uint64
}

// clock is the registry's injected time and randomness, shared by everything it builds.
type clock struct {
	now  func() time.Time
	rand func() uint64
}

// Registry owns the live state of every origin of a node and runs the health checks. One per
// node. Safe for concurrent use; its methods are for config swaps and the admin API, not for
// the request path (they share one mutex).
type Registry struct {
	clk       *clock
	log       *slog.Logger
	transport http.RoundTripper
	own       *http.Transport // the default transport, whose idle connections Close drops
	events    *eventLog

	mu      sync.Mutex
	groups  map[string]*groupEntry
	closed  bool
	running sync.WaitGroup // checker goroutines, stopped or not
}

// groupEntry is one key's current Group and what keeps its state alive.
type groupEntry struct {
	group    *Group
	states   map[originKey]*originState
	checkers map[originKey]*checker
	retry    RetryPolicy // with defaults, to tell whether the budget can be kept
	panics   *atomic.Uint64
}

// originKey identifies an origin's live state within a group.
type originKey struct{ pool, url string }

// NewRegistry returns an empty registry. Call Close when done with it, to stop the checkers.
func NewRegistry(o RegistryOptions) *Registry {
	r := &Registry{
		clk:    &clock{now: o.Now, rand: o.Rand},
		log:    o.Logger,
		groups: map[string]*groupEntry{},
	}
	if r.clk.now == nil {
		r.clk.now = time.Now
	}
	if r.clk.rand == nil {
		r.clk.rand = rand.Uint64
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.transport = o.Transport
	if r.transport == nil {
		r.own = &http.Transport{
			Proxy: nil, // checks go straight to the origin, as the proxy's requests do
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second, // the check's own Timeout is usually shorter and wins
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 1,                // one check at a time per origin
			IdleConnTimeout:     30 * time.Second, // above any sane interval, so checks reuse it
			DisableCompression:  true,             // BodyContains reads the bytes as sent
		}
		r.transport = r.own
	}
	r.events = newEventLog(r.log)
	return r
}

// Group returns the live upstream of a site: its pools, in order, with the default retry
// policy. Same as GroupWithRetry(key, pools, outlier, RetryPolicy{}).
func (r *Registry) Group(key string, pools []PoolConfig, outlier Outlier) *Group {
	return r.GroupWithRetry(key, pools, outlier, RetryPolicy{})
}

// GroupWithRetry returns the live upstream of a site: its pools, in order, and a retry
// budget sized by retry (zero fields mean the defaults).
//
// Calling it again with the same key keeps the state (EWMA, in flight, health, ejections,
// counters) of origins whose (pool name, URL) are unchanged, so a config swap does not reset
// health; origins no longer listed lose theirs. The retry budget is kept too when the
// policy is unchanged. Health checkers are started for pools with a Check, restarted if the
// Check changed (the origin keeps its current up/down state until the new checks say
// otherwise), and stopped for origins that lost theirs, which then count as up. After Close
// no checker starts.
//
// Origins with a nil URL are skipped (the config compiler rejects them); weights are
// clamped to 1..100. The Group returned for an old key stays usable by requests in flight.
func (r *Registry) GroupWithRetry(key string, pools []PoolConfig, outlier Outlier, retry RetryPolicy) *Group {
	outlier = outlier.withDefaults()
	retry = retry.withDefaults()

	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.groups[key]
	if e == nil {
		e = &groupEntry{states: map[originKey]*originState{}, checkers: map[originKey]*checker{}, panics: new(atomic.Uint64)}
		r.groups[key] = e
	}
	g := &Group{key: key, clk: r.clk, panics: e.panics}
	if e.group != nil && e.retry == retry {
		g.budget = e.group.budget
	} else {
		g.budget = NewRetryBudget(retry.Ratio, retry.MinPerSecond, r.clk.now)
	}
	e.retry = retry

	states := make(map[originKey]*originState)
	wantChecks := make(map[originKey]HealthCheck)
	for _, pc := range pools {
		p := &Pool{name: pc.Name}
		if pc.Check != nil {
			hc := pc.Check.withDefaults()
			p.check = &hc
		}
		for _, oc := range pc.Origins {
			if oc.URL == nil {
				r.log.Error("upstream: origin without URL skipped", "site", key, "pool", pc.Name)
				continue
			}
			k := originKey{pc.Name, oc.URL.String()}
			st := states[k]
			if st == nil {
				st = e.states[k]
			}
			if st == nil {
				st = newOriginState(key, pc.Name, oc.URL, r.clk, r.events)
			}
			states[k] = st
			p.origins = append(p.origins, &Origin{
				url: oc.URL, weight: min(max(oc.Weight, 1), 100), pool: pc.Name, outlier: outlier, st: st,
			})
			if p.check != nil {
				wantChecks[k] = *p.check
			}
		}
		g.pools = append(g.pools, p)
	}

	// Checkers: keep those whose check is unchanged, stop the others, start the missing.
	for k, c := range e.checkers {
		if hc, ok := wantChecks[k]; ok && hc == c.check {
			continue
		}
		c.cancel()
		delete(e.checkers, k)
		if st := states[k]; st != nil {
			if _, ok := wantChecks[k]; !ok {
				st.stopChecks() // no check any more: the origin counts as up
			}
		}
	}
	if !r.closed {
		for k, hc := range wantChecks {
			if e.checkers[k] == nil {
				e.checkers[k] = r.startChecker(originOf(g, k), hc)
			}
		}
	}
	e.states = states
	e.group = g
	return g
}

// originOf returns an origin of g with key k (those sharing a key share their state and
// URL, so any will do).
func originOf(g *Group, k originKey) *Origin {
	for _, p := range g.pools {
		if p.name != k.pool {
			continue
		}
		for _, o := range p.origins {
			if o.url.String() == k.url {
				return o
			}
		}
	}
	return nil
}

// Retain stops the checkers and drops the state of every group whose key is not in keys
// (sites removed by a new config), and waits for those checkers to return. Groups already
// handed out keep working, without active checks.
func (r *Registry) Retain(keys []string) {
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		keep[k] = true
	}
	var stopped []*checker
	r.mu.Lock()
	for key, e := range r.groups {
		if keep[key] {
			continue
		}
		for _, c := range e.checkers {
			c.cancel()
			stopped = append(stopped, c)
		}
		delete(r.groups, key)
	}
	r.mu.Unlock()
	for _, c := range stopped {
		<-c.done
	}
}

// Close stops all checkers and waits for them, then stops the background logger. Groups
// stay usable (without active checks) and Status keeps working. Idempotent.
func (r *Registry) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for _, e := range r.groups {
		for k, c := range e.checkers {
			c.cancel()
			delete(e.checkers, k)
		}
	}
	r.mu.Unlock()
	r.running.Wait()
	r.events.close()
	if r.own != nil {
		r.own.CloseIdleConnections()
	}
}

// keys returns the registry's group keys, sorted. r.mu must be held.
func (r *Registry) keys() []string {
	keys := make([]string, 0, len(r.groups))
	for k := range r.groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// eventLog hands log lines caused by live traffic to one goroutine, so that End never waits
// on a log handler's I/O. When the queue is full, lines are dropped and counted.
type eventLog struct {
	log     *slog.Logger
	queue   chan slog.Record
	stop    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
}

func newEventLog(l *slog.Logger) *eventLog {
	ev := &eventLog{log: l, queue: make(chan slog.Record, 256), stop: make(chan struct{}), done: make(chan struct{})}
	go ev.run()
	return ev
}

func (ev *eventLog) run() {
	defer close(ev.done)
	for {
		select {
		case rec := <-ev.queue:
			ev.emit(rec)
		case <-ev.stop:
			for {
				select {
				case rec := <-ev.queue:
					ev.emit(rec)
				default:
					return
				}
			}
		}
	}
}

func (ev *eventLog) emit(rec slog.Record) {
	if ev.log.Enabled(context.Background(), rec.Level) {
		_ = ev.log.Handler().Handle(context.Background(), rec)
	}
}

// add queues one line; it never blocks.
func (ev *eventLog) add(level slog.Level, msg string, attrs ...slog.Attr) {
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.AddAttrs(attrs...)
	if n := ev.dropped.Swap(0); n > 0 {
		rec.AddAttrs(slog.Uint64("dropped_before", n))
	}
	select {
	case ev.queue <- rec:
	default:
		ev.dropped.Add(1)
	}
}

// close drains the queue and stops the goroutine. Lines logged afterwards are dropped: the
// queue is never closed, so a late End cannot panic on it.
func (ev *eventLog) close() {
	select {
	case <-ev.stop:
	default:
		close(ev.stop)
	}
	<-ev.done
}
