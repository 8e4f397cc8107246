package proxy

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
)

// Health is what a node reports about itself while a bundle rolls out: one unhealthy report
// halts the rollout mesh-wide, so the figures count only what the node caused, never what its
// origins or clients did. Every counter only grows from the handler's creation; a reporter
// compares two reads.
type Health struct {
	// Requests is every request the handler was given.
	Requests uint64 `json:"requests"`
	// Responses counts the answers by status class: [0] 1xx .. [4] 5xx (origins' included).
	Responses [5]uint64 `json:"responses"`
	// NodeErrors is every 5xx answer the node made for a reason of its own (an internal
	// failure, a loop in its config), never an origin's 5xx or an origin being down or slow;
	// and every recovered panic that no such answer reports (background work, or a response
	// cut off after its headers were sent).
	NodeErrors uint64 `json:"node_errors"`
	// Panics is every panic recovered on the request path and in the work it starts.
	Panics uint64 `json:"panics"`
	// StageFailures is every stage error, timeout and panic (the stage was bypassed or
	// refused the request; see package stages).
	StageFailures uint64 `json:"stage_failures"`
}

// healthCounters back Health. Atomics: every request goroutine writes them.
type healthCounters struct {
	requests, nodeErrors, panics atomic.Uint64
	classes                      [5]atomic.Uint64
}

// countResponse counts a finished request's status class.
func (h *Handler) countResponse(lw *logWriter, x *exchange) {
	st := lw.status
	if st == 0 {
		st = x.status
	}
	if st == 0 {
		st = http.StatusOK // a handler that wrote nothing answered 200
	}
	if c := st/100 - 1; c >= 0 && c < len(h.health.classes) {
		h.health.classes[c].Add(1)
	}
}

// Health returns the handler's counters. Safe for concurrent use; the three are read one
// after the other, not as one snapshot.
func (h *Handler) Health() Health {
	hl := Health{
		Requests:   h.health.requests.Load(),
		NodeErrors: h.health.nodeErrors.Load(),
		Panics:     h.health.panics.Load(),
	}
	for i := range hl.Responses {
		hl.Responses[i] = h.health.classes[i].Load()
	}
	if h.stages != nil {
		hl.StageFailures = h.stages.Failures()
	}
	return hl
}

// countError counts an error answer about to be written as the node's own when it is a 5xx
// that rhizome caused. Only writeError calls it, so that every such answer counts once.
func (h *Handler) countError(e *Error) {
	if e.Status >= 500 && e.Source == SourceInternal {
		h.health.nodeErrors.Add(1)
	}
}

// recoverRequest is deferred by ServeHTTP, so that a panic on the request path ends one
// request and not the process. It must be the deferred function itself: recover only works
// there.
func (h *Handler) recoverRequest(w http.ResponseWriter, r *http.Request, x *exchange, lw *logWriter) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p) // net/http's way to cut a response (abort): it must reach the server as it is
	}
	h.recordPanic("panic serving request", p, "request_id", x.rid, "method", r.Method, "host", r.Host, "path", r.URL.Path)
	// A hijacked connection (an upgrade's) no longer belongs to w: nothing may be written.
	if lw.status != 0 || x.status == http.StatusSwitchingProtocols {
		// Too late for a 500, and ending cleanly would pass a cut body off as whole.
		h.health.nodeErrors.Add(1)
		panic(http.ErrAbortHandler)
	}
	hdr := w.Header()
	clear(hdr) // what a stage set for the answer it never sent (Content-Encoding, Set-Cookie...)
	hdr["X-Request-Id"] = []string{x.rid}
	h.writeError(w, r, x, &Error{Status: http.StatusInternalServerError, Source: SourceInternal, Detail: "internal-error", Err: fmt.Errorf("panic: %v", p)})
}

// goSafe runs fn on a new goroutine for work a request started (a cache fill that outlives
// its client, a background revalidation, an upgrade's copying). A panic in fn is recovered,
// logged and counted instead of ending the process, and onPanic (nil: nothing) then releases
// what fn would have released by returning, so that nobody waits on it forever. fn's own
// deferred calls have run by then.
func (h *Handler) goSafe(name string, fn func(), onPanic func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				h.recordPanic("panic in "+name, p)
				h.health.nodeErrors.Add(1) // no answer carries this one: count it here
				if onPanic != nil {
					onPanic()
				}
			}
		}()
		fn()
	}()
}

// recordPanic counts a recovered panic and logs it with the stack of the goroutine that
// panicked; it must be called from the deferred function that recovered p. A panic already
// counted further down (transportPanic) is not counted or logged again.
func (h *Handler) recordPanic(msg string, p any, attrs ...any) {
	if _, ok := p.(*transportPanic); ok {
		return
	}
	h.health.panics.Add(1)
	h.log.Error(msg, append(attrs, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))...)
}

// guardTransport counts and logs a panic in the origin transport where it happens, then lets
// it go on as a transportPanic. It is there because a cache fill's request runs inside lead,
// whose own recovery turns any panic into an error answer without counting it.
type guardTransport struct {
	h    *Handler
	next http.RoundTripper
}

func (g guardTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.h.recordPanic("panic in origin transport", p, "method", r.Method, "url", r.URL.Redacted())
			panic(&transportPanic{val: p})
		}
	}()
	return g.next.RoundTrip(r)
}

// transportPanic carries a panic that guardTransport already counted and logged.
type transportPanic struct{ val any }

func (p *transportPanic) Error() string { return fmt.Sprintf("panic in origin transport: %v", p.val) }

// looped reports whether the request already passed through this node: an entry of a Via
// field, as outbound writes it, is received by this handler's name. That happens when a
// bundle points a site's origin back at the CDN; serving the request again would recurse
// until some limit broke.
func (h *Handler) looped(hdr http.Header) bool {
	for _, v := range hdr["Via"] {
		for entry := range strings.SplitSeq(v, ",") {
			if receivedBy(entry) == h.name {
				return true
			}
		}
	}
	return false
}

// receivedBy returns the received-by part of one Via entry, "protocol received-by [comment]"
// (RFC 9110 §7.6.3), or "". Commas inside a comment are not special-cased on purpose: a client
// could otherwise open a comment that swallows the entries proxies append after it, and hide a
// loop; the worst a comma in a comment does here is answer that client 508.
func receivedBy(entry string) string {
	entry = strings.TrimLeft(entry, " \t")
	i := strings.IndexAny(entry, " \t")
	if i < 0 {
		return ""
	}
	by := strings.TrimLeft(entry[i:], " \t")
	if j := strings.IndexAny(by, " \t("); j >= 0 {
		by = by[:j]
	}
	return by
}
