package upstream

import (
	"math"
	"sync"
	"time"
)

// budgetTau is how long a first attempt's deposit lasts: tokens decay with this time
// constant, so the balance is about ratio × the first attempts of the last 10 s.
const budgetTau = float64(10 * time.Second)

// budgetFloorWindow is how many seconds of the floor may accumulate.
const budgetFloorWindow = 10

// RetryBudget bounds retries to a share of live traffic, so that a sick origin is not
// buried under retries and a failing site does not multiply its own load (the retry
// budgets of Finagle and Envoy). Safe for concurrent use: one small mutex, no I/O.
//
// It keeps two balances. Every first attempt deposits ratio tokens into the first; those
// tokens decay exponentially with a 10 s time constant instead of piling up, so a long
// healthy spell cannot fund a retry storm later: the balance tracks ratio × the first
// attempts of the last ~10 s, and a wave of failures (every request in flight failing at
// once) may retry about that share of itself. The second balance, the floor, accrues
// minPerSecond tokens per second up to 10 s worth (at least one token when minPerSecond > 0),
// and starts full, so a quiet or newly configured site can still retry. A retry spends one
// token, from the traffic balance first.
type RetryBudget struct {
	ratio, minPerSecond float64
	floorCap            float64
	now                 func() time.Time

	mu      sync.Mutex
	tokens  float64 // funded by first attempts, decaying
	floor   float64 // funded by time
	updated int64   // unix ns of the last decay and accrual
}

// NewRetryBudget returns a budget allowing ratio retries per first attempt (0.2 = 20%,
// at most 1) plus minPerSecond retries per second. Negative values count as 0; now
// nil means time.Now.
func NewRetryBudget(ratio float64, minPerSecond float64, now func() time.Time) *RetryBudget {
	if now == nil {
		now = time.Now
	}
	ratio = math.Min(math.Max(ratio, 0), 1)
	minPerSecond = math.Max(minPerSecond, 0)
	b := &RetryBudget{ratio: ratio, minPerSecond: minPerSecond, now: now}
	if minPerSecond > 0 {
		b.floorCap = math.Max(budgetFloorWindow*minPerSecond, 1)
	}
	b.floor = b.floorCap
	b.updated = now().UnixNano()
	return b
}

// Request records a first attempt, depositing ratio tokens. Call it once per client
// request that reaches an origin, before its first attempt.
func (b *RetryBudget) Request() {
	if b.ratio == 0 {
		return
	}
	b.mu.Lock()
	b.advance(b.now().UnixNano())
	b.tokens += b.ratio
	b.mu.Unlock()
}

// TryRetry takes one token and reports true if the budget allows a retry now.
func (b *RetryBudget) TryRetry() bool {
	// A tolerance keeps 5 deposits of 0.2 worth one retry despite binary rounding.
	const whole = 1 - 1e-9
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.now().UnixNano())
	switch {
	case b.tokens >= whole:
		b.tokens = math.Max(b.tokens-1, 0)
	case b.floor >= whole:
		b.floor = math.Max(b.floor-1, 0)
	default:
		return false
	}
	return true
}

// Available returns the retries the budget would allow now, for status and tests.
func (b *RetryBudget) Available() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.now().UnixNano())
	return b.tokens + b.floor
}

// advance decays the traffic balance and accrues the floor up to now. b.mu must be held.
func (b *RetryBudget) advance(now int64) {
	dt := now - b.updated
	if dt <= 0 {
		return // a clock that stands still or steps back changes nothing
	}
	b.updated = now
	if b.tokens > 0 {
		b.tokens *= math.Exp(-float64(dt) / budgetTau)
	}
	if b.floor < b.floorCap {
		b.floor = math.Min(b.floor+b.minPerSecond*float64(dt)/float64(time.Second), b.floorCap)
	}
}
