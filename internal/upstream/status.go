package upstream

import (
	"math"
	"time"
)

// Origin states in OriginStatus.State.
const (
	StateHealthy   = "healthy"   // available: active check up (or none), not ejected
	StateUnhealthy = "unhealthy" // active check down (takes precedence over ejected)
	StateEjected   = "ejected"   // ejected by outlier detection until EjectedUntil
)

// GroupStatus is a snapshot of one site's upstream, for the admin API and `rhizome status`.
type GroupStatus struct {
	Key   string       `json:"key"`
	Pools []PoolStatus `json:"pools"`
	// PanicPicks counts picks made while no origin was available, since the key was
	// first configured: non-zero means requests went to origins believed unhealthy.
	PanicPicks uint64 `json:"panic_picks"`
	// RetryTokens is the retries the site's budget would allow now.
	RetryTokens float64 `json:"retry_tokens"`
}

// PoolStatus is a snapshot of one pool.
type PoolStatus struct {
	Name    string         `json:"name"`
	Origins []OriginStatus `json:"origins"`
}

// OriginStatus is a snapshot of one origin's live state. Counters run since the state was
// created (the origin first appeared in its pool).
type OriginStatus struct {
	URL          string     `json:"url"`
	Weight       int        `json:"weight"`
	State        string     `json:"state"` // StateHealthy, StateUnhealthy or StateEjected
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	// LatencyEWMAms is the smoothed time to response headers as last updated, in ms; 0 = no
	// observation yet. Pick sees it decayed by the time since.
	LatencyEWMAms float64 `json:"latency_ewma_ms"`
	Inflight      int64   `json:"inflight"`
	Requests      uint64  `json:"requests"` // attempts ended with any result but Canceled
	Failures      uint64  `json:"failures"` // Failure, ConnectError and Timeout results
	// ErrorRate is failures / requests over the last 50 to 60 s (six 10 s buckets).
	ErrorRate           float64    `json:"error_rate"`
	LastCheck           *time.Time `json:"last_check,omitempty"` // nil: no active check has run
	LastCheckOK         bool       `json:"last_check_ok"`
	LastCheckError      string     `json:"last_check_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

// Status returns a snapshot of every group, sorted by key; pools and origins in configured
// order. Each origin is read consistently; different origins at slightly different times.
func (r *Registry) Status() []GroupStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clk.now()
	out := make([]GroupStatus, 0, len(r.groups))
	for _, key := range r.keys() {
		e := r.groups[key]
		if e.group == nil {
			continue
		}
		gs := GroupStatus{Key: key, PanicPicks: e.panics.Load(), RetryTokens: e.group.budget.Available()}
		for _, p := range e.group.pools {
			ps := PoolStatus{Name: p.name, Origins: make([]OriginStatus, 0, len(p.origins))}
			for _, o := range p.origins {
				ps.Origins = append(ps.Origins, o.status(now))
			}
			gs.Pools = append(gs.Pools, ps)
		}
		out = append(out, gs)
	}
	return out
}

func (o *Origin) status(now time.Time) OriginStatus {
	st := o.st
	n := now.UnixNano()
	s := OriginStatus{URL: st.url, Weight: o.weight, State: StateHealthy, Inflight: st.inflight.Load()}
	if s.Inflight < 0 {
		s.Inflight = 0
	}
	if e := math.Float64frombits(st.ewma.Load()); e > 0 {
		s.LatencyEWMAms = e / float64(time.Millisecond)
	}
	until := st.ejectedUntil.Load()
	switch {
	case !st.up.Load():
		s.State = StateUnhealthy
	case n < until:
		s.State = StateEjected
	}
	if n < until {
		t := time.Unix(0, until)
		s.EjectedUntil = &t
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s.Requests, s.Failures = st.requests, st.failures
	s.ErrorRate = st.window.rate(n)
	s.ConsecutiveFailures = st.outlier.consecutive
	if st.lastCheck != 0 {
		t := time.Unix(0, st.lastCheck)
		s.LastCheck = &t
		s.LastCheckOK, s.LastCheckError = st.lastCheckOK, st.lastCheckError
	}
	return s
}
