package upstream

import (
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Origin is one origin of a Group's pool: its configuration and a pointer to its live
// state, which it shares with the Origins of later Groups built for the same site, pool name
// and URL. Safe for concurrent use.
type Origin struct {
	url     *url.URL
	weight  int
	pool    string
	outlier Outlier // the Group's, with defaults: End judges failures by the config it was picked under
	st      *originState
}

// URL returns the origin's URL (scheme, host, optional path prefix). Callers must not modify it.
func (o *Origin) URL() *url.URL { return o.url }

// Weight returns the origin's weight, 1..100.
func (o *Origin) Weight() int { return o.weight }

// Pool returns the name of the origin's pool.
func (o *Origin) Pool() string { return o.pool }

// Available reports whether Pick would choose it outside panic mode: its active check says
// up (or it has none) and it is not ejected. Never blocks.
func (o *Origin) Available() bool { return o.st.available(o.st.clk.now().UnixNano()) }

// Begin records that an attempt starts (one more request in flight) and returns a handle the
// caller MUST end exactly once, whatever happens to the attempt; a forgotten End leaves the
// origin looking busier than it is for as long as the state lives.
func (o *Origin) Begin() *Attempt {
	o.st.inflight.Add(1)
	return &Attempt{o: o, began: o.st.clk.now().UnixNano()}
}

// Result is the outcome of one attempt, as the proxy saw it. Append-only: values are
// compared by number.
type Result int

// Results of an attempt.
const (
	// Success is a response the origin meant: any status below 500, and 5xx statuses that
	// describe the request rather than the origin's health (501, 505, ...).
	Success Result = iota
	// Failure is a 500, 502, 503 or 504 response, or an error after connecting.
	Failure
	// ConnectError means no connection could be made: refused, unreachable, or the
	// connect timeout. (The proxy counts TLS handshake failures as Failure or Timeout.)
	ConnectError
	// Timeout is a connect, first-byte or idle timeout.
	Timeout
	// Canceled means the client went away: neither success nor failure of the origin, so
	// it counts nowhere and does not move the EWMA.
	Canceled
)

var resultNames = [...]string{"success", "failure", "connect_error", "timeout", "canceled"}

// String returns the result's snake_case name, for logs and metrics.
func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// Attempt is one request to one origin, from Origin.Begin to Attempt.End.
type Attempt struct {
	o     *Origin
	began int64 // unix ns, from the registry's clock
	ended atomic.Bool
}

// End records the outcome of the attempt: one request fewer in flight; on Success the
// latency (time to response headers) moves the origin's EWMA; Failure,
// ConnectError and Timeout count towards outlier ejection and Success resets the count;
// every result but Canceled counts in the requests and error rate of the status. A second
// End of the same Attempt is ignored. Never blocks on I/O: an ejection's log line goes to a
// background goroutine.
//
// The EWMA is time-decayed (as Finagle's and Linkerd's peak-EWMA, without the peak):
// ewma = ewma*w + latency*(1-w) with w = exp(-dt/10s), dt the time since the previous
// observation, so an observation weighs about as much as all those of the last 10 s
// together. A rate-independent window keeps a busy origin's EWMA from swinging on each
// request and a quiet one's from staying stale; the in-flight factor of the load score
// reacts to a sudden slowdown at once in the meantime.
func (a *Attempt) End(r Result, latency time.Duration) {
	if a == nil || !a.ended.CompareAndSwap(false, true) {
		return
	}
	st := a.o.st
	st.inflight.Add(-1)
	if r == Canceled {
		return
	}
	now := st.clk.now().UnixNano()
	failed := r != Success
	st.mu.Lock()
	// Only successes teach the EWMA: an origin failing fast (a 503 in 1 ms) must not look
	// faster than its healthy peers and attract traffic.
	if r == Success {
		e := ewmaUpdate(math.Float64frombits(st.ewma.Load()), st.ewmaAt.Load(), now, float64(max(latency, 1)))
		st.ewma.Store(math.Float64bits(e))
		st.ewmaAt.Store(now)
	}
	st.requests++
	if failed {
		st.failures++
	}
	st.window.add(now, failed)
	ev := st.outlier.record(failed, a.began, now, a.o.outlier)
	if ev.ejected {
		st.ejectedUntil.Store(ev.until)
	}
	consecutive := st.outlier.consecutive
	st.mu.Unlock()
	switch {
	case ev.ejected:
		st.logf(slog.LevelWarn, "origin ejected", slog.String("result", r.String()),
			slog.Int("consecutive_failures", consecutive), slog.Int("ejections_in_a_row", ev.streak),
			slog.Duration("for", time.Duration(ev.until-now)))
	case ev.readmitted:
		st.logf(slog.LevelInfo, "origin re-admitted", slog.String("reason", "success after ejection"))
	}
}

// originState is the live state of one origin of one site, shared by every Group built for
// the same (site key, pool name, URL). What Pick reads is atomic; what End and the checker
// update together sits under mu, which nothing holds for longer than a few assignments.
type originState struct {
	key    string // site key, pool name and URL: for log lines
	pool   string
	url    string
	clk    *clock
	events *eventLog

	up           atomic.Bool   // active check says up; true when the pool has no check
	inflight     atomic.Int64  // attempts begun and not ended
	ejectedUntil atomic.Int64  // unix ns; the origin is ejected while now < ejectedUntil
	ewma         atomic.Uint64 // float64 bits, ns; 0 = no observation yet
	ewmaAt       atomic.Int64  // unix ns of the last EWMA observation

	mu             sync.Mutex
	outlier        outlierState
	requests       uint64
	failures       uint64
	window         window
	checkGen       uint64 // bumped when a checker starts or checks stop; stale checkers' results are dropped
	lastCheck      int64  // unix ns; 0 = never
	lastCheckOK    bool
	lastCheckError string
}

func newOriginState(key, pool string, u *url.URL, clk *clock, events *eventLog) *originState {
	st := &originState{key: key, pool: pool, url: u.String(), clk: clk, events: events}
	st.up.Store(true) // a new origin serves at once; failing checks take it down
	return st
}

func (st *originState) available(now int64) bool {
	return st.up.Load() && now >= st.ejectedUntil.Load()
}

// ewmaNow returns the decayed latency estimate in ns at now, or 0 when there is none.
func (st *originState) ewmaNow(now int64) float64 {
	return ewmaDecay(math.Float64frombits(st.ewma.Load()), st.ewmaAt.Load(), now)
}

func (st *originState) logf(level slog.Level, msg string, attrs ...slog.Attr) {
	st.events.add(level, msg, append(attrs, slog.String("site", st.key), slog.String("pool", st.pool), slog.String("url", st.url))...)
}
