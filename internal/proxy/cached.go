package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/cachepolicy"
)

// varyMarker is the Status of the small record stored under a primary key whose responses
// carry Vary: its header holds the Vary field values, and the variants live under
// primary + "\x00" + secondary key. Real responses never have status 0.
const varyMarker = 0

// outcome says how a flight (one origin fetch shared by every request for a key) ended.
type outcome int

const (
	outError     outcome = iota // no usable response: err says why
	outPass                     // not storable: only the leader may use resp; others fetch on their own
	outFill                     // storable: the body streams through fill to every waiter
	outRefreshed                // a 304 refreshed the stored object: serve obj
	outStale                    // the origin failed and the stale object may be served
)

// flight is one origin fetch that concurrent requests for the same key wait on. Fields are
// written by the leader before done is closed and only read afterwards.
type flight struct {
	done chan struct{}
	gen  uint64 // the store's purge generation when the fetch began

	kind    outcome
	err     *Error
	status  int            // origin status, for Cache-Status fwd-status
	resp    *http.Response // outPass: the leader's to stream and close
	reason  string         // outPass: why it was not stored
	fill    *cache.Fill    // outFill
	meta    *cache.Meta    // outFill: what is being stored
	varyKey string         // outFill: secondary key of the stored variant ("" without Vary)
	length  int64          // outFill: Content-Length, -1 unknown
	obj     *cache.Object  // outRefreshed
}

// joinFlight returns the flight for key, creating it (leader == true) when none is running.
// Keys recently seen uncacheable get a private flight, so that requests for them are not
// serialised behind each other (Varnish's hit-for-miss).
//
// A request never joins a fetch that began before a purge (its content may be what the
// operator wanted gone): it starts a new one, which replaces the old in the map.
func (h *Handler) joinFlight(key string) (f *flight, leader bool) {
	gen := h.store.Generation()
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.flights[key]; ok && f.gen == gen && (f.fill == nil || !f.fill.Purged()) {
		return f, false
	}
	f = &flight{done: make(chan struct{}), gen: gen}
	h.flights[key] = f
	return f, true
}

// endFlight forgets f so that later requests start afresh.
func (h *Handler) endFlight(key string, f *flight) {
	h.mu.Lock()
	if h.flights[key] == f {
		delete(h.flights, key)
	}
	h.mu.Unlock()
}

// serveCached answers a GET or HEAD from the cache, or through one shared origin fetch.
// Every cache decision below (freshness, storing, stale serving) uses the settings for the
// request's path, x.cache, which cacheable chose.
func (h *Handler) serveCached(w http.ResponseWriter, r *http.Request, x *exchange) {
	primary, err := cachepolicy.CacheKey(x.scheme, r.Host, r.URL)
	if err != nil {
		h.writeError(w, r, x, &Error{Status: http.StatusBadRequest, Source: SourceClient, Detail: "bad-request-target", Err: err})
		return
	}
	obj, skey, varyMiss := h.lookup(primary, r.Header)
	req := cachepolicy.ParseRequest(r.Header)
	if obj == nil {
		if req.OnlyIfCached {
			h.writeError(w, r, x, &Error{Status: http.StatusGatewayTimeout, Source: SourceClient, Detail: "only-if-cached"})
			return
		}
		fwd := "fwd=miss"
		if varyMiss {
			fwd = "fwd=vary-miss"
		}
		h.fetch(w, r, x, primary, skey, nil, fwd, 0)
		return
	}
	dec := h.prepared(obj, x.cache.Policy).Decide(r.Header, h.now())
	switch dec.Action {
	case cachepolicy.Fresh:
		if !h.serveObject(w, r, x, obj, dec.Age, h.name+"; hit; ttl="+seconds(dec.TTL)) {
			h.fetch(w, r, x, primary, skey, nil, "fwd=miss", 0)
		}
	case cachepolicy.StaleRevalidate:
		if !h.serveObject(w, r, x, obj, dec.Age, h.name+"; hit; ttl="+seconds(dec.TTL)+"; detail=stale-while-revalidate") {
			h.fetch(w, r, x, primary, skey, nil, "fwd=miss", 0)
			return
		}
		h.revalidateInBackground(r, x, primary, skey, obj)
	default:
		if req.OnlyIfCached {
			h.writeError(w, r, x, &Error{Status: http.StatusGatewayTimeout, Source: SourceClient, Detail: "only-if-cached"})
			return
		}
		fwd := "fwd=stale"
		if !dec.Stale {
			fwd = "fwd=request" // fresh, but the request or no-cache asked for validation
		}
		h.fetch(w, r, x, primary, skey, obj, fwd, 0)
	}
}

// asksPart reports whether the client asked for less than the full representation (a
// range, a conditional, or headers only), which a shared fill request leaves out.
func asksPart(r *http.Request) bool {
	if r.Method == http.MethodHead {
		return true
	}
	for _, k := range []string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if _, ok := r.Header[k]; ok {
			return true
		}
	}
	return false
}

// lookup finds the stored response for a request, following the Vary marker to the variant
// that the request's selecting headers choose. skey is the key that a fetch for this request
// should share; varyMiss tells a missing variant from a missing URL.
func (h *Handler) lookup(primary string, reqH http.Header) (obj *cache.Object, skey string, varyMiss bool) {
	o, ok := h.store.Get(primary)
	if !ok {
		return nil, primary, false
	}
	m := o.Meta()
	if m.Status != varyMarker {
		return o, primary, false
	}
	vk, ok := cachepolicy.VaryKey(m.Header.Values("Vary"), reqH)
	if !ok {
		return nil, primary, false
	}
	skey = primary + "\x00" + vk
	if v, ok := h.store.Get(skey); ok {
		return v, skey, false
	}
	return nil, skey, true
}

// prepared returns the object's parsed freshness for policy, computing it on first use. The
// object's metadata is immutable (a 304 makes a new object), so the result stays valid for
// the object's life unless the policy for its path changes with a new snapshot.
func (h *Handler) prepared(o *cache.Object, policy cachepolicy.Policy) *cachepolicy.Prepared {
	if pr, ok := o.Memo().(*cachepolicy.Prepared); ok && pr.Policy() == policy {
		return pr
	}
	pr := policy.Prepare(stored(o))
	o.SetMemo(pr)
	return pr
}

func stored(o *cache.Object) *cachepolicy.Stored {
	m := o.Meta()
	return &cachepolicy.Stored{Status: m.Status, Header: m.Header, RequestTime: m.RequestTime, ResponseTime: m.ResponseTime}
}

// fetch makes (or waits for) the one origin request for skey and answers from its outcome.
// stale is the stored response being revalidated, if any.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, x *exchange, primary, skey string, stale *cache.Object, fwd string, depth int) {
	if reason, ok := h.passMemo.get(skey, h.now()); ok && stale == nil {
		// Recently uncacheable (Varnish's hit-for-pass): the request goes to the origin as
		// the client sent it (Range, conditionals and HEAD included), without queueing
		// behind a shared fetch; the key is tried for the cache again after passMemoTTL.
		h.servePass(w, r, x, fwd, reason)
		return
	}
	f, leader := h.joinFlight(skey)
	if leader {
		h.lead(r, x, f, primary, skey, stale)
	} else {
		select {
		case <-f.done:
		case <-r.Context().Done():
			return
		}
	}
	collapsed := ""
	if !leader {
		collapsed = "; collapsed"
	}
	switch f.kind {
	case outError:
		if h.serveStaleOnError(w, r, x, stale, f.err.Status) {
			return
		}
		h.writeError(w, r, x, f.err)
	case outStale:
		if !h.serveStaleOnError(w, r, x, stale, f.status) {
			h.writeError(w, r, x, &Error{Status: http.StatusBadGateway, Source: SourceOrigin, Detail: "origin-error-" + strconv.Itoa(f.status)})
		}
	case outRefreshed:
		dec := h.prepared(f.obj, x.cache.Policy).Decide(r.Header, h.now())
		if !h.serveObject(w, r, x, f.obj, dec.Age, h.name+"; "+fwd+"; fwd-status=304"+collapsed) {
			h.servePass(w, r, x, fwd, "evicted")
		}
	case outPass:
		if leader && f.resp != nil && !asksPart(r) {
			defer f.resp.Body.Close()
			h.writeUpstream(w, r, x, f.resp, h.name+"; "+fwd+"; fwd-status="+strconv.Itoa(f.status)+"; detail="+f.reason)
			return
		}
		if leader && f.resp != nil {
			// The fill request dropped the client's Range or conditionals; the origin
			// must see them, so ask again with the client's own request.
			f.resp.Body.Close()
		}
		h.servePass(w, r, x, fwd+collapsed, f.reason)
	case outFill:
		if !leader && f.varyKey != "" && depth == 0 {
			// The leader's response varies on headers this request may not share: take
			// the variant's own path (which may collapse with requests that do share them).
			if vk, _ := cachepolicy.VaryKey(f.meta.Header.Values("Vary"), r.Header); vk != f.varyKey {
				h.fetch(w, r, x, primary, primary+"\x00"+vk, nil, "fwd=vary-miss", depth+1)
				return
			}
		}
		h.serveFill(w, r, x, f, h.name+"; "+fwd+"; fwd-status="+strconv.Itoa(f.status)+"; stored"+collapsed)
	}
}

// lead performs the origin request of a flight and publishes its outcome. The request runs on
// a context detached from the client: other waiters and the cache need the body even if the
// client that happened to arrive first hangs up.
func (h *Handler) lead(r *http.Request, x *exchange, f *flight, primary, skey string, stale *cache.Object) {
	ctx := context.WithoutCancel(r.Context())
	var validators http.Header
	if stale != nil {
		validators = cachepolicy.Validators(stale.Meta().Header)
	}
	published := false
	publish := func(k outcome) {
		f.kind = k
		published = true
		close(f.done)
		if k != outFill {
			h.endFlight(skey, f)
		}
	}
	defer func() {
		// Whatever happens here, waiters must not wait forever on this flight.
		if p := recover(); p != nil {
			h.recordPanic("panic while fetching for the cache", p, "key", skey)
			if !published {
				f.err = &Error{Status: http.StatusInternalServerError, Source: SourceInternal, Detail: "internal-error"}
				publish(outError)
			}
		}
	}()
	reqTime := h.now()
	resp, err := h.roundTrip(ctx, r, x, true, validators)
	respTime := h.now()
	if err != nil {
		f.err = err
		if stale != nil && x.cache.Policy.StaleIfErrorOK(r.Header, stored(stale), respTime, x.cache.AlwaysOnline) {
			f.status = err.Status
			publish(outStale)
			return
		}
		publish(outError)
		return
	}
	f.status = resp.StatusCode
	if resp.StatusCode == http.StatusNotModified && stale != nil {
		drain(resp)
		if h.refresh(r, x, f, stale, resp.Header, reqTime, respTime) {
			publish(outRefreshed)
		} else {
			publish(outPass) // without a response: every waiter asks the origin itself
		}
		return
	}
	if resp.StatusCode >= 500 && stale != nil && x.cache.Policy.StaleIfErrorOK(r.Header, stored(stale), respTime, x.cache.AlwaysOnline) {
		resp.Body.Close()
		publish(outStale)
		return
	}

	ok, reason := x.cache.Policy.Storable(http.MethodGet, r.Header, resp.StatusCode, resp.Header)
	if ok && resp.ContentLength > h.store.MaxObjectBytes() {
		ok, reason = false, "too-large"
	}
	if !ok {
		f.resp, f.reason = resp, reason
		if reason != "request-no-store" { // one client's directive must not change others' path
			h.passMemo.add(skey, reason, respTime)
		}
		publish(outPass)
		return
	}
	h.passMemo.forget(skey)

	hdr := resp.Header.Clone()
	removeHopHeaders(hdr, false)
	tags := parseTags(hdr)
	delete(hdr, "Cache-Tag")
	delete(hdr, "Surrogate-Key")
	if _, ok := hdr["Date"]; !ok {
		hdr["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	key := primary
	if vary := hdr.Values("Vary"); len(vary) > 0 {
		vk, _ := cachepolicy.VaryKey(vary, r.Header) // Storable refused "Vary: *"
		f.varyKey = vk
		key = primary + "\x00" + vk
		h.storeVaryMarker(primary, vary, reqTime, respTime)
	}
	meta := cache.Meta{Key: key, Status: resp.StatusCode, Header: hdr, RequestTime: reqTime, ResponseTime: respTime, Tags: tags}
	fill, berr := h.store.BeginSince(meta, f.gen) // a purge since the fetch began wins
	if berr != nil {
		h.log.Warn("cache write failed; passing through", "key", key, "err", berr)
		f.resp, f.reason = resp, "store-error"
		publish(outPass)
		return
	}
	h.mu.Lock() // joinFlight reads f.fill under h.mu
	f.fill = fill
	h.mu.Unlock()
	f.meta, f.length = &meta, resp.ContentLength
	publish(outFill)
	h.goSafe("cache fill", func() { h.copyFill(skey, f, resp) }, f.fill.Abort)
}

// refresh applies a 304 to the stored object (RFC 9111 §4.3.4). The 304 was answered to one
// client's request, so what is personal in it (Set-Cookie) or meant for the cache (purge
// tags) is not merged into the shared copy; and if the merged header no longer allows
// storing (the origin now says private or no-store), the object is dropped, the stale copy
// is not served, and the request fails over to a plain pass.
func (h *Handler) refresh(r *http.Request, x *exchange, f *flight, stale *cache.Object, h304 http.Header, reqTime, respTime time.Time) bool {
	upd := h304.Clone()
	for _, k := range []string{"Set-Cookie", "Cache-Tag", "Surrogate-Key"} {
		delete(upd, k)
	}
	m := *stale.Meta()
	m.Header = cachepolicy.Merge304(m.Header, upd)
	m.RequestTime, m.ResponseTime = reqTime, respTime
	if ok, reason := x.cache.Policy.Storable(http.MethodGet, r.Header, m.Status, m.Header); !ok && reason != "request-no-store" {
		h.store.Delete(m.Key)
		f.reason = reason
		return false
	}
	if err := h.store.UpdateMeta(m.Key, m); err != nil {
		h.log.Warn("cache update after 304 failed", "key", m.Key, "err", err)
	}
	if o, ok := h.store.Get(m.Key); ok && o.Meta().ResponseTime.Equal(respTime) {
		f.obj = o
		return true
	}
	// Evicted or purged meanwhile: the body still reads; serve it this once.
	f.obj = stale
	return true
}

// copyFill moves the origin body into the fill, and commits it only when it is complete: a
// truncated body (connection cut, fewer bytes than Content-Length) is never stored.
func (h *Handler) copyFill(skey string, f *flight, resp *http.Response) {
	defer h.endFlight(skey, f)
	defer resp.Body.Close()
	n, err := io.Copy(f.fill, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		h.endFlight(skey, f) // first, so that no request joins a fill about to fail
		f.fill.Abort()
		h.log.Warn("origin body incomplete; not stored", "key", f.meta.Key, "bytes", n, "err", err)
		return
	}
	if !f.fill.Storable() {
		// A body of unknown length outgrew the store: stream such responses straight
		// through for a while instead of buffering them for nothing. Noted before Commit,
		// which is when the waiters see the end of the body.
		h.passMemo.add(skey, "too-large", h.now())
	}
	switch err := f.fill.Commit(); {
	case err == nil, errors.Is(err, cache.ErrPurged), errors.Is(err, cache.ErrTooLarge):
	default:
		h.log.Warn("cache commit failed", "key", f.meta.Key, "err", err)
	}
}

// storeVaryMarker records under primary which request headers select a variant.
func (h *Handler) storeVaryMarker(primary string, vary []string, reqTime, respTime time.Time) {
	if o, ok := h.store.Get(primary); ok && o.Meta().Status == varyMarker && equalStrings(o.Meta().Header["Vary"], vary) {
		return
	}
	fill, err := h.store.Begin(cache.Meta{Key: primary, Status: varyMarker, Header: http.Header{"Vary": vary}, RequestTime: reqTime, ResponseTime: respTime})
	if err != nil {
		return
	}
	if err := fill.Commit(); err != nil {
		h.log.Warn("vary marker not stored", "key", primary, "err", err)
	}
}

// revalidateInBackground refreshes a stale object that was just served
// (stale-while-revalidate), unless a fetch for it is already running.
func (h *Handler) revalidateInBackground(r *http.Request, x *exchange, primary, skey string, stale *cache.Object) {
	f, leader := h.joinFlight(skey)
	if !leader {
		return
	}
	// The request and exchange are the client's and end with it: keep copies.
	r2 := r.Clone(context.WithoutCancel(r.Context()))
	x2 := *x
	h.goSafe("background revalidation", func() {
		h.lead(r2, &x2, f, primary, skey, stale)
		if f.kind == outPass && f.resp != nil {
			f.resp.Body.Close()
		}
	}, nil)
}

// serveStaleOnError answers with the stale object when the origin failed and RFC 5861
// stale-if-error or the always-online window for the request's path allows it.
func (h *Handler) serveStaleOnError(w http.ResponseWriter, r *http.Request, x *exchange, stale *cache.Object, status int) bool {
	if stale == nil {
		return false
	}
	now := h.now()
	if !x.cache.Policy.StaleIfErrorOK(r.Header, stored(stale), now, x.cache.AlwaysOnline) {
		return false
	}
	dec := h.prepared(stale, x.cache.Policy).Decide(r.Header, now)
	return h.serveObject(w, r, x, stale, dec.Age, h.name+"; fwd=stale; fwd-status="+strconv.Itoa(status)+"; ttl="+seconds(dec.TTL)+"; detail=stale-if-error")
}

// drain reads what is left of a body expected to be empty or tiny (a 304's), so that its
// connection can be reused, then closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// passMemo remembers keys whose last response could not be stored, and why, for a short
// while, so that their requests go to the origin in parallel instead of queueing behind one
// fetch (Varnish's hit-for-pass).
type passMemo struct {
	memoMu sync.Mutex
	memo   map[string]memoEntry
}

type memoEntry struct {
	until  time.Time
	reason string
}

const (
	passMemoTTL = 30 * time.Second // how long a key counts as uncacheable (Varnish uses 120s)
	passMemoMax = 10000            // entries; the memo is reset when full, which only costs collapsing
)

func (p *passMemo) init() { p.memo = map[string]memoEntry{} }

func (p *passMemo) get(key string, now time.Time) (string, bool) {
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	e, ok := p.memo[key]
	if ok && now.After(e.until) {
		delete(p.memo, key)
		return "", false
	}
	return e.reason, ok
}

func (p *passMemo) add(key, reason string, now time.Time) {
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	if len(p.memo) >= passMemoMax {
		clear(p.memo)
	}
	p.memo[key] = memoEntry{until: now.Add(passMemoTTL), reason: reason}
}

func (p *passMemo) forget(key string) {
	p.memoMu.Lock()
	delete(p.memo, key)
	p.memoMu.Unlock()
}
