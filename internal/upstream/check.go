package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkUserAgent identifies health checks in origin logs, so operators can filter them.
const checkUserAgent = "rhizome-health-check"

// checker is one running health-check goroutine.
type checker struct {
	check  HealthCheck
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

// startChecker starts checking o with hc. r.mu must be held (for r.running).
func (r *Registry) startChecker(o *Origin, hc HealthCheck) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checker{check: hc, cancel: cancel, done: make(chan struct{})}
	gen := o.st.startChecks()
	target := checkURL(o.url, hc.Path)
	r.running.Add(1)
	go func() {
		defer r.running.Done()
		defer close(c.done)
		r.runChecker(ctx, o.st, gen, target, hc)
	}()
	return c
}

// runChecker checks one origin every hc.Interval (±10%), the first time at once, until ctx
// ends. Checks are sequential: a slow origin delays the next check rather than piling them up.
func (r *Registry) runChecker(ctx context.Context, st *originState, gen uint64, target string, hc HealthCheck) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var rf riseFall
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := probe(ctx, r.transport, target, hc)
		if ctx.Err() != nil {
			return // stopped mid-check: the result says nothing about the origin
		}
		if up, changed := st.recordCheck(gen, r.clk.now().UnixNano(), err, &rf, hc); changed {
			if up {
				r.log.Info("origin up", "site", st.key, "pool", st.pool, "url", st.url,
					"reason", fmt.Sprintf("%d checks in a row passed", hc.Rise))
			} else {
				r.log.Warn("origin down", "site", st.key, "pool", st.pool, "url", st.url,
					"reason", err.Error(), "failed_checks", hc.Fall)
			}
		}
		timer.Reset(jitter(hc.Interval, r.clk.rand()))
	}
}

// jitter spreads d by ±10% using the random value u.
func jitter(d time.Duration, u uint64) time.Duration {
	f := float64(u>>11) / (1 << 53) // uniform in [0, 1)
	return time.Duration(float64(d) * (0.9 + 0.2*f))
}

// checkURL joins the origin URL's path prefix and the check path (which may carry a query).
func checkURL(u *url.URL, path string) string {
	t := *u
	p, q, _ := strings.Cut(path, "?")
	t.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(p, "/")
	t.RawPath = ""
	t.RawQuery = q
	t.Fragment, t.RawFragment = "", ""
	return t.String()
}

// probe runs one check and returns why it failed, or nil.
func probe(ctx context.Context, rt http.RoundTripper, target string, hc HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, hc.Method, target, nil)
	if err != nil {
		return fmt.Errorf("health check request: %w", err)
	}
	if hc.Host != "" {
		req.Host = hc.Host
	}
	req.Header.Set("User-Agent", checkUserAgent)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return checkError(ctx, hc, err)
	}
	defer resp.Body.Close()
	// Read (a bounded part of) the body even when not matching it, so that the connection
	// can be reused and a body that never ends counts as a timeout.
	body, err := io.ReadAll(io.LimitReader(resp.Body, checkBodyLimit))
	if err != nil {
		return checkError(ctx, hc, fmt.Errorf("reading body: %w", err))
	}
	if resp.StatusCode < hc.StatusMin || resp.StatusCode > hc.StatusMax {
		return fmt.Errorf("status %d outside %d..%d", resp.StatusCode, hc.StatusMin, hc.StatusMax)
	}
	if hc.BodyContains != "" && !bytes.Contains(body, []byte(hc.BodyContains)) {
		return fmt.Errorf("body does not contain %q", hc.BodyContains)
	}
	return nil
}

// checkError names a timeout as such: the transport's wording varies with the phase.
func checkError(ctx context.Context, hc HealthCheck, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timeout after %s: %w", hc.Timeout, err)
	}
	return err
}

// startChecks makes the checks of a new checker the ones that count and returns its
// generation; results of older checkers are dropped from then on.
func (st *originState) startChecks() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.checkGen++
	return st.checkGen
}

// stopChecks drops the origin's active checks: it counts as up from now on.
func (st *originState) stopChecks() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.checkGen++
	st.lastCheck, st.lastCheckOK, st.lastCheckError = 0, false, ""
	if !st.up.Swap(true) {
		st.events.add(slog.LevelInfo, "origin up", slog.String("site", st.key), slog.String("pool", st.pool),
			slog.String("url", st.url), slog.String("reason", "active checks removed"))
	}
}

// recordCheck stores one check result of generation gen and applies Rise and Fall. It
// returns the state and whether it flipped; results of a stale generation change nothing.
func (st *originState) recordCheck(gen uint64, now int64, err error, rf *riseFall, hc HealthCheck) (up, changed bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if gen != st.checkGen {
		return st.up.Load(), false
	}
	st.lastCheck, st.lastCheckOK, st.lastCheckError = now, err == nil, ""
	if err != nil {
		st.lastCheckError = err.Error()
	}
	was := st.up.Load()
	up = rf.observe(err == nil, was, hc.Rise, hc.Fall)
	st.up.Store(up)
	return up, up != was
}
