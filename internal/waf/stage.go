package waf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/corazawaf/coraza/v3/types"

	"rhizome/internal/clientip"
	"rhizome/internal/stages"
)

// Stage is the WAF request stage (stages.Stage, stages.Inline, stages.Preparer). Safe for
// concurrent use.
type Stage struct {
	set atomic.Pointer[Set]
	log *slog.Logger

	inspected, blocked, detected, overLimit, tooLarge, readErrors, oversized atomic.Uint64
}

// Stats are the stage's figures since NewStage.
type Stats struct {
	Inspected  uint64 `json:"inspected"`   // requests a site's WAF checked
	Blocked    uint64 `json:"blocked"`     // refused by a rule (mode block)
	Detected   uint64 `json:"detected"`    // would have been refused by a rule (mode detect)
	OverLimit  uint64 `json:"over_limit"`  // bodies larger than the site's body limit (inspected in part or refused)
	TooLarge   uint64 `json:"too_large"`   // bodies refused with 413 (over_limit reject)
	ReadErrors uint64 `json:"read_errors"` // bodies the client broke off or sent malformed (400)
	Oversized  uint64 `json:"oversized"`   // request lines or header sections over the WAF's bounds (414, 431)
}

// NewStage returns a stage with no WAF anywhere until Use; log nil means slog.Default().
func NewStage(log *slog.Logger) *Stage {
	if log == nil {
		log = slog.Default()
	}
	return &Stage{log: log}
}

// Use swaps in the compiled set atomically; nil switches the WAF off everywhere. Requests
// already being checked finish with the set they started with.
func (s *Stage) Use(set *Set) { s.set.Store(set) }

// Name is the stage's name.
func (s *Stage) Name() string { return "waf" }

// Inline implements stages.Inline: Coraza only computes (Go RE2 regular expressions, linear
// in their input) over a request whose body is bounded by the body limit and already read
// by Prepare, so the check runs on the request's goroutine.
func (s *Stage) Inline() bool { return true }

// DefaultBudget implements stages.Budgeter: the WAF needs more than the driver's default.
func (s *Stage) DefaultBudget() time.Duration { return DefaultBudget }

// Stats returns the stage's figures.
func (s *Stage) Stats() Stats {
	return Stats{Inspected: s.inspected.Load(), Blocked: s.blocked.Load(), Detected: s.detected.Load(),
		OverLimit: s.overLimit.Load(), TooLarge: s.tooLarge.Load(), ReadErrors: s.readErrors.Load(), Oversized: s.oversized.Load()}
}

// site returns the WAF of a site, nil when it has none.
func (s *Stage) site(name string) *siteWAF {
	set := s.set.Load()
	if set == nil {
		return nil
	}
	return set.sites[name]
}

// body replaces a request body that Prepare read: it replays the bytes read, then the rest
// of the original body, so that the origin gets the body unchanged. Check finds the bytes to
// inspect on it.
type body struct {
	buf     []byte // read from the client so far
	off     int    // replayed so far
	inspect []byte // what Check inspects: buf, or, for a body cut, its first limit+1 bytes
	eof     bool   // the original body is exhausted
	orig    io.ReadCloser
}

func (b *body) Read(p []byte) (int, error) {
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	return b.orig.Read(p)
}

// Close closes the original body.
func (b *body) Close() error { return b.orig.Close() }

// mayHaveBody reports whether r may carry a body: the server gives requests without one
// http.NoBody and ContentLength 0 (GET and HEAD included); -1 is a chunked body.
func mayHaveBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// Prepare implements stages.Preparer: for a site with a WAF it reads up to the body limit
// plus one byte from the client, so that it knows whether the body is over the limit, and
// replaces r.Body with one that replays those bytes and then the rest. A body over the limit
// is refused with 413 unless the site says inspect_partial; a body the client breaks off
// gets 400.
func (s *Stage) Prepare(r *http.Request, site string) (stages.Verdict, error) {
	return s.prepare(s.site(site), r, site)
}

// prepare is Prepare for the site's WAF sw (nil: none). A body already read is not read
// again.
func (s *Stage) prepare(sw *siteWAF, r *http.Request, site string) (stages.Verdict, error) {
	if sw == nil {
		return stages.Verdict{}, nil
	}
	if len(r.RequestURI) > MaxURIBytes || len(r.URL.RawQuery)+len(r.URL.Path) > MaxURIBytes {
		s.oversized.Add(1)
		return stages.Verdict{Block: true, Status: http.StatusRequestURITooLong, Reason: "waf:uri-too-long"}, nil
	}
	if headerBytes(r.Header) > MaxHeaderBytes {
		s.oversized.Add(1)
		return stages.Verdict{Block: true, Status: http.StatusRequestHeaderFieldsTooLarge, Reason: "waf:headers-too-large"}, nil
	}
	if !mayHaveBody(r) {
		return stages.Verdict{}, nil
	}
	if _, done := r.Body.(*body); done {
		return stages.Verdict{}, nil
	}
	buf, eof, err := readPrefix(r.Body, sw.limit+1, r.ContentLength)
	b := &body{buf: buf, eof: eof, orig: r.Body, inspect: buf}
	r.Body = b
	if err != nil {
		// The client broke the request (reset, timeout, bad chunking): not a stage failure.
		s.readErrors.Add(1)
		s.log.Debug("waf: reading the request body failed", "site", site, "err", err)
		return stages.Verdict{Block: true, Status: http.StatusBadRequest, Reason: "waf:body-read-error"}, nil
	}
	if int64(len(buf)) > sw.limit {
		s.overLimit.Add(1)
		if sw.reject {
			s.tooLarge.Add(1)
			return stages.Verdict{Block: true, Status: http.StatusRequestEntityTooLarge, Reason: "waf:body-too-large"}, nil
		}
		// inspect_partial: Check hands Coraza limit+1 bytes, one more than a body that is
		// not cut can have, which is how the engine (whose SecRequestBodyLimit is limit+1)
		// knows it was cut (INBOUND_DATA_ERROR) and so lets a cut JSON, XML or multipart
		// body that does not parse through. readPrefix read exactly limit+1 bytes.
		b.inspect = buf[:sw.limit+1]
	}
	return stages.Verdict{}, nil
}

// headerBytes is the size of the header fields as the WAF would read them.
func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// readPrefix reads up to max bytes from r. It sizes its buffer by the declared length when
// there is one (one allocation for most bodies) and grows it otherwise. eof reports that r
// ended within max bytes.
func readPrefix(r io.Reader, max, declared int64) (buf []byte, eof bool, err error) {
	size := int64(512)
	if declared > 0 {
		size = declared + 1 // +1: the read that sees EOF needs room
	}
	size = min(size, max)
	buf = make([]byte, 0, size)
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf))*2, max))-len(buf))
		}
		n, err := r.Read(buf[len(buf):int(min(int64(cap(buf)), max))])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

// maxLogURI bounds the URI written to logs: a huge URI must not make a huge log line.
const maxLogURI = 256

// Check implements stages.Stage: one Coraza transaction over the request line, the headers
// and the body bytes Prepare read. A rule's interruption refuses the request with 403 (or
// the rule's own 4xx) and Reason "waf:<rule id>", naming the attack rule that matched rather
// than the anomaly evaluation, so that an operator can write an exclusion from it; in mode
// detect it is logged and counted instead.
//
// Check ignores ctx: it runs inline, bounded by the body limit and the request line and
// header bounds, and always finishes. A client that hung up (its request context cancelled)
// is no reason to skip the inspection: returning the context's error would count as the
// stage failing, and a fail-open WAF would then let the request (a cache fill, say) reach
// the origin uninspected.
func (s *Stage) Check(_ context.Context, r *http.Request, site string) (stages.Verdict, error) {
	sw := s.site(site)
	if sw == nil {
		return stages.Verdict{}, nil
	}
	// Prepare read the set a moment ago; if a new bundle gave this site a WAF since, the
	// body has not been read: read it now, so that it is never let through uninspected.
	if v, err := s.prepare(sw, r, site); err != nil || v.Block {
		return v, err
	}
	s.inspected.Add(1)
	tx := sw.engine.NewTransaction()
	defer func() {
		tx.ProcessLogging()
		if err := tx.Close(); err != nil {
			s.log.Debug("waf: closing a transaction failed", "site", site, "err", err)
		}
	}()

	client, cport := clientAddr(r, sw.trusted)
	var server string
	var sport int
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		server, sport = splitHostPort(a.String())
	}
	tx.ProcessConnection(client, cport, server, sport)
	uri := r.RequestURI
	if uri == "" && r.URL != nil {
		uri = r.URL.RequestURI()
	}
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	tx.ProcessURI(uri, r.Method, proto)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	// net/http moves Host and Transfer-Encoding out of the header map; the CRS checks both.
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		host, _ := splitHostPort(r.Host)
		tx.SetServerName(host)
	}
	if len(r.TransferEncoding) > 0 && len(r.Header["Transfer-Encoding"]) == 0 {
		for _, te := range r.TransferEncoding {
			tx.AddRequestHeader("Transfer-Encoding", te)
		}
	}
	if r.ContentLength > 0 && len(r.Header["Content-Length"]) == 0 {
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return s.verdict(sw, tx, it, site, uri), nil
	}
	if b, ok := r.Body.(*body); ok && len(b.inspect) > 0 {
		it, _, err := tx.WriteRequestBody(b.inspect)
		if err != nil {
			return stages.Verdict{}, fmt.Errorf("waf: buffer the request body: %w", err)
		}
		if it != nil {
			return s.verdict(sw, tx, it, site, uri), nil
		}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		return stages.Verdict{}, fmt.Errorf("waf: process the request body: %w", err)
	}
	if it != nil {
		return s.verdict(sw, tx, it, site, uri), nil
	}
	return stages.Verdict{}, nil
}

// verdict turns an interruption into the stage's verdict for the site's mode.
func (s *Stage) verdict(sw *siteWAF, tx types.Transaction, it *types.Interruption, site, uri string) stages.Verdict {
	id, ids := attackRules(tx.MatchedRules(), it.RuleID)
	if sw.detect {
		s.detected.Add(1)
		s.log.Info("waf: would have blocked (detect mode)", "site", site, "rule", id, "rules", ids, "uri", truncate(uri, maxLogURI))
		return stages.Verdict{}
	}
	s.blocked.Add(1)
	s.log.Debug("waf: blocked", "site", site, "rule", id, "rules", ids, "uri", truncate(uri, maxLogURI))
	status := http.StatusForbidden
	if it.Status >= 400 && it.Status <= 499 {
		status = it.Status
	}
	return stages.Verdict{Block: true, Status: status, Reason: "waf:" + strconv.Itoa(id)}
}

// isAttackRule reports CRS rules that detect something (911xxx method enforcement to 944xxx
// Java attacks): not the initialization, exception, evaluation or correlation rules, and not
// coraza.conf-recommended's or ours.
func isAttackRule(id int) bool { return id >= 910000 && id < 949000 }

// attackRules returns the id to name a block by, the most severe attack rule that matched
// (the first of equals), or fallback when none did (e.g. a body that did not parse), and
// the ids of every attack rule that matched. Matched rules without a severity are the CRS's
// flow control (9xx013/9xx014 paranoia-level skips) and are not attacks.
func attackRules(matched []types.MatchedRule, fallback int) (int, []int) {
	best, bestSev := fallback, 0
	var ids []int
	for _, m := range matched {
		r := m.Rule()
		id := r.ID()
		if !isAttackRule(id) {
			continue
		}
		sev := r.Severity().Int() // 0 emergency .. 7 debug; -1 unset
		if sev < 0 {
			continue // a flow-control rule (paranoia-level skips), not a detection
		}
		if len(ids) == 0 || sev < bestSev {
			best, bestSev = id, sev
		}
		ids = append(ids, id)
	}
	return best, ids
}

// clientAddr is the client's address and port for Coraza's REMOTE_ADDR and REMOTE_PORT: the
// peer, or the client behind the site's trusted proxies (clientip.Addr, as the rate limiter
// and the bot stage see it), whose port is not known (0). A RemoteAddr that does not parse
// is passed on as it is.
func clientAddr(r *http.Request, trusted []netip.Prefix) (string, int) {
	host, port := splitHostPort(r.RemoteAddr)
	a := clientip.Addr(r, trusted)
	if !a.IsValid() {
		return host, port
	}
	if a != clientip.Peer(r) {
		port = 0
	}
	return a.String(), port
}

// splitHostPort splits "host:port", tolerating a bare host.
func splitHostPort(s string) (string, int) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
