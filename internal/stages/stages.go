// Package stages runs the request stages that protect a site (rate limiting, WAF, bot
// classification, pay-per-crawl) so that a broken stage stays a local failure. On 18
// November 2025 a bot-scoring module that failed on every request took a fifth of the web
// with it; here every stage runs under panic recovery and a time budget, a stage that fails
// is bypassed (fail open, the default) or refuses the request with a 4xx (fail closed, the
// operator's choice), never a 5xx, and every outcome is counted. A stage switched off by a
// kill switch is not run at all.
//
// The driver knows nothing of what the stages decide; the stages themselves arrive with the
// security issue. The proxy calls Run before the cache.
package stages

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Names are the request stages, in the order they run: what kill switches and a site's
// stage_modes may name.
var Names = []string{"ratelimit", "waf", "bots", "paycrawl"}

// Verdict is a stage's decision about a request.
type Verdict struct {
	Block  bool   // refuse the request
	Status int    // the status to answer with when Block (e.g. 403, 429); default 403
	Reason string // a short token for logs and Cache-Status detail, e.g. "rate-limited"
	// RetryAfter, when set on a block, is sent as Retry-After (whole seconds, rounded up).
	RetryAfter time.Duration
}

// Stage is one request stage. Check must honour ctx (it is cancelled when the stage's
// time budget runs out); a Check that ignores it is abandoned, not waited for.
type Stage interface {
	Name() string
	Check(ctx context.Context, r *http.Request, site string) (Verdict, error)
}

// Inline is implemented by stages whose Check ends in bounded time by itself: it computes
// in memory (a rate limiter, a rule matcher) or bounds its own waits (the bot stage: 500 ms
// at most for DNS or a key directory). They run on the request's goroutine, which saves the
// goroutine, timer and context a budgeted check costs (about 4.7 µs of a 1.5 µs cache hit,
// measured by BenchmarkHitStages), and to completion: their panics are recovered all the
// same, and a check past its budget is counted as slow, its verdict standing. Stages whose
// waits they do not bound themselves must not be inline: only a separate goroutine can be
// abandoned.
type Inline interface {
	Inline() bool
}

// Preparer is implemented by stages that must read from the client before they can judge
// (the WAF buffers the request body up to its limit). Prepare runs on the request's
// goroutine before Check and outside the time budget: a client that sends its body slowly
// must not push the check past its budget and so past the stage (fail open would let it
// through unchecked). The wait is bounded by the server's read timeouts and the stage's own
// limits. A blocking verdict stops the request; an error counts as the stage failing.
type Preparer interface {
	Prepare(r *http.Request, site string) (Verdict, error)
}

// Budgeter is implemented by stages that need another default budget than DefaultBudget
// (the WAF: the Core Rule Set costs milliseconds where the others cost microseconds). A
// site's stage_modes budget still wins.
type Budgeter interface {
	DefaultBudget() time.Duration
}

// Mode is how a stage runs for one site.
type Mode struct {
	FailClosed bool          // refuse the request when the stage fails (default: bypass it)
	Budget     time.Duration // the stage's time budget per request; 0: DefaultBudget
}

// StatusClientGone is the status logged for a request whose client went away while a stage
// checked it (nginx's 499): the request goes no further, and nobody reads the answer.
const StatusClientGone = 499

// DefaultBudget bounds a stage that sets no budget.
const DefaultBudget = 50 * time.Millisecond

// MaxInFlight bounds the checks of one stage still running, abandoned ones included: a
// stage that hangs on every request must not pile up goroutines without end. Beyond it the
// stage is bypassed (and counted as a timeout) without being run.
const MaxInFlight = 1024

// Counters are one stage's figures since the driver was made.
type Counters struct {
	Runs     uint64 `json:"runs"`
	Blocks   uint64 `json:"blocks"`
	Errors   uint64 `json:"errors"`
	Timeouts uint64 `json:"timeouts"`
	Panics   uint64 `json:"panics"`
	Bypasses uint64 `json:"bypasses"` // skipped: kill switch on, or failed open
	// Slow counts inline checks that finished past their budget. Not a failure: their
	// verdict stands (see checkInline).
	Slow uint64 `json:"slow"`
}

type counters struct {
	runs, blocks, errors, timeouts, panics, bypasses, slow atomic.Uint64
	inflight                                               atomic.Int64
}

// Driver runs stages in order. Safe for concurrent use; immutable after New.
type Driver struct {
	stages []Stage
	c      []*counters
	mode   func(stage, site string) Mode
	killed func(stage, site string) bool
	log    *slog.Logger
}

// Options configure a Driver.
type Options struct {
	// Mode gives a stage's mode for a site; nil: fail open with DefaultBudget.
	Mode func(stage, site string) Mode
	// Killed reports whether a kill switch bypasses the stage for the site; nil: never.
	// It is called on every request and must be cheap (read a ready snapshot).
	Killed func(stage, site string) bool
	Logger *slog.Logger
}

// New returns a driver running stages in the order given.
func New(stages []Stage, o Options) *Driver {
	d := &Driver{stages: stages, mode: o.Mode, killed: o.Killed, log: o.Logger}
	if d.log == nil {
		d.log = slog.Default()
	}
	for range stages {
		d.c = append(d.c, &counters{})
	}
	return d
}

// Run runs every stage for r. It returns the first blocking verdict, with the stage's
// name, or blocked false when the request may go on.
func (d *Driver) Run(r *http.Request, site string) (v Verdict, stage string, blocked bool) {
	for i, s := range d.stages {
		name := s.Name()
		c := d.c[i]
		if d.killed != nil && d.killed(name, site) {
			c.bypasses.Add(1)
			continue
		}
		mode := Mode{}
		if d.mode != nil {
			mode = d.mode(name, site)
		}
		v, err := d.check(s, c, r, site, mode)
		if err == errClientGone {
			return Verdict{Block: true, Status: StatusClientGone, Reason: "client-gone"}, name, true
		}
		if err != nil {
			if mode.FailClosed {
				return Verdict{Block: true, Status: http.StatusForbidden, Reason: name + "-failed-closed"}, name, true
			}
			c.bypasses.Add(1)
			d.log.Debug("stage bypassed after a failure", "stage", name, "site", site, "err", err)
			continue
		}
		if v.Block {
			c.blocks.Add(1)
			if v.Status == 0 {
				v.Status = http.StatusForbidden
			}
			return v, name, true
		}
	}
	return Verdict{}, "", false
}

// failure says why a check failed without the stage saying so.
type failure string

func (f failure) Error() string { return string(f) }

const (
	errTimeout  = failure("time budget exceeded")
	errOverload = failure("too many checks still running")
	// errClientGone: the client went away during the check. Not the stage's failure (not
	// counted, no fail open): the request stops there, as the client is not waiting.
	errClientGone = failure("client gone")
)

// check runs one stage under its budget, recovering a panic.
func (d *Driver) check(s Stage, c *counters, r *http.Request, site string, mode Mode) (Verdict, error) {
	budget := mode.Budget
	if budget <= 0 {
		budget = DefaultBudget
		if b, ok := s.(Budgeter); ok {
			budget = b.DefaultBudget()
		}
	}
	// Prepare waits on the client, so it runs before the stage counts as in flight: slow
	// clients must not fill MaxInFlight and so turn the stage off for everyone else.
	if p, ok := s.(Preparer); ok {
		v, err := d.prepare(p, s.Name(), r, site)
		if err != nil || v.Block {
			c.runs.Add(1)
			if err != nil {
				if gone(r) {
					return Verdict{}, errClientGone
				}
				c.errors.Add(1)
			}
			return v, err
		}
	}
	if in, ok := s.(Inline); ok && in.Inline() {
		// Not counted in flight: an inline check is the request's own work and ends with
		// it, so there is nothing to pile up; counting it would let a burst of concurrent
		// requests (or of waits, in the bot stage) push the stage into bypassing everyone.
		c.runs.Add(1)
		return d.checkInline(s, c, r, site, budget)
	}
	if c.inflight.Add(1) > MaxInFlight {
		c.inflight.Add(-1)
		c.timeouts.Add(1)
		return Verdict{}, errOverload
	}
	c.runs.Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	type result struct {
		v        Verdict
		err      error
		panicked bool // counted already
	}
	done := make(chan result, 1) // buffered: an abandoned check can still finish
	go func() {
		defer c.inflight.Add(-1)
		defer func() {
			if p := recover(); p != nil {
				c.panics.Add(1)
				d.log.Error("stage panicked; bypassing it for this request", "stage", s.Name(), "site", site, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				done <- result{err: fmt.Errorf("panic: %v", p), panicked: true}
			}
		}()
		v, err := s.Check(ctx, r, site)
		done <- result{v: v, err: err}
	}()
	t := time.NewTimer(budget)
	defer t.Stop()
	defer cancel()
	select {
	case res := <-done:
		if res.err != nil {
			switch {
			case gone(r) && !res.panicked:
				return Verdict{}, errClientGone
			case ctx.Err() != nil:
				c.timeouts.Add(1)
				return Verdict{}, errTimeout
			case !res.panicked:
				c.errors.Add(1)
			}
			return Verdict{}, res.err
		}
		return res.v, nil
	case <-t.C:
		c.timeouts.Add(1)
		return Verdict{}, errTimeout
	case <-r.Context().Done():
		return Verdict{}, errClientGone
	}
}

// gone reports whether the client went away (its request context ended): what a stage then
// failed to do is not the stage's failure, and the request goes no further.
func gone(r *http.Request) bool { return r.Context().Err() != nil }

// checkInline runs an Inline stage on the caller's goroutine, to completion: it cannot be
// abandoned, so its budget cannot cut it short, and a verdict reached late is still the
// stage's verdict. Past its budget it is counted as slow, not as a failure: on a saturated
// node every check runs late, and treating that as the stage breaking would let load alone
// fail stages open and roll good bundles back (a benchmark at full load did exactly that).
func (d *Driver) checkInline(s Stage, c *counters, r *http.Request, site string, budget time.Duration) (v Verdict, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			c.panics.Add(1)
			d.log.Error("stage panicked; bypassing it for this request", "stage", s.Name(), "site", site, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			v, err = Verdict{}, fmt.Errorf("panic: %v", p)
		}
	}()
	v, err = s.Check(r.Context(), r, site)
	if time.Since(start) > budget {
		c.slow.Add(1)
	}
	switch {
	case err == nil:
		return v, nil
	case gone(r):
		return Verdict{}, errClientGone
	default:
		c.errors.Add(1)
		return Verdict{}, err
	}
}

// prepare runs a Preparer, recovering a panic (counted as an error, like the failure it is).
func (d *Driver) prepare(p Preparer, name string, r *http.Request, site string) (v Verdict, err error) {
	defer func() {
		if x := recover(); x != nil {
			d.log.Error("stage panicked while preparing; bypassing it for this request", "stage", name, "site", site, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
			v, err = Verdict{}, fmt.Errorf("panic in prepare: %v", x)
		}
	}()
	return p.Prepare(r, site)
}

// Stats returns each stage's counters, by name.
func (d *Driver) Stats() map[string]Counters {
	out := map[string]Counters{}
	for i, s := range d.stages {
		c := d.c[i]
		out[s.Name()] = Counters{Runs: c.runs.Load(), Blocks: c.blocks.Load(), Errors: c.errors.Load(),
			Timeouts: c.timeouts.Load(), Panics: c.panics.Load(), Bypasses: c.bypasses.Load(), Slow: c.slow.Load()}
	}
	return out
}

// Failures is the stages' errors, timeouts and panics together: what a node's health
// report counts as stage failures, so that a stage that breaks after a rollout halts it.
func (d *Driver) Failures() uint64 {
	var n uint64
	for _, c := range d.c {
		n += c.errors.Load() + c.timeouts.Load() + c.panics.Load()
	}
	return n
}
