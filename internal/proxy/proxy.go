package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/cachepolicy"
	"rhizome/internal/clientip"
	"rhizome/internal/snapshot"
	"rhizome/internal/stages"
	"rhizome/internal/upstream"
)

// Config are the node-wide settings of the data plane. Per-site settings live in the snapshot.
type Config struct {
	// Store keeps cached objects. Nil disables caching for every site.
	Store *cache.Store
	// Transport makes origin requests. Nil means NewTransport(TransportOptions{}).
	Transport http.RoundTripper
	// Name identifies this cache in Cache-Status and Via. Default "rhizome". A request whose
	// Via already names it is answered 508 (a loop), so it must be one token, unique to the node.
	Name string
	// Logger receives errors and, when AccessLog is set, one line per request.
	Logger    *slog.Logger
	AccessLog bool
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// Registry keeps the origins' live health across snapshots and runs health checks.
	// Nil: the handler makes its own and stops it in Close.
	Registry *upstream.Registry
	// Stages run before the cache for every request of a site (rate limiting, WAF, bots);
	// nil: none. A failing stage is bypassed or refuses the request, never a 5xx.
	Stages *stages.Driver
	// RobotsTxt gives a site's managed robots.txt section (the bot policy's AI preferences),
	// or nil to leave /robots.txt to the origin. It is called for /robots.txt only.
	RobotsTxt func(site string) []byte
}

// Handler is the data plane. Create it with New; it is an http.Handler.
type Handler struct {
	snap      atomic.Pointer[snapshot.Snapshot]
	store     *cache.Store
	transport http.RoundTripper
	name      string
	via       string
	log       *slog.Logger
	accessLog bool
	now       func() time.Time

	ridPrefix string
	ridSeq    atomic.Uint64

	registry    *upstream.Registry
	ownRegistry bool
	swapMu      sync.Mutex // serialises Swap: binding a snapshot to the registry

	mu      sync.Mutex
	flights map[string]*flight
	passMemo

	health healthCounters // what Health reports; health.go
	stages *stages.Driver
	robots func(site string) []byte
}

// New returns a Handler serving snap.
func New(snap *snapshot.Snapshot, cfg Config) *Handler {
	h := &Handler{
		store:     cfg.Store,
		transport: cfg.Transport,
		name:      cfg.Name,
		log:       cfg.Logger,
		accessLog: cfg.AccessLog,
		now:       cfg.Now,
		flights:   map[string]*flight{},
		stages:    cfg.Stages,
		robots:    cfg.RobotsTxt,
	}
	if h.transport == nil {
		h.transport = NewTransport(TransportOptions{})
	}
	h.transport = guardTransport{h: h, next: h.transport}
	if h.name == "" {
		h.name = "rhizome"
	}
	h.via = "1.1 " + h.name
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	h.ridPrefix = hex.EncodeToString(b[:]) + "-"
	h.passMemo.init()
	h.registry = cfg.Registry
	if h.registry == nil {
		h.registry = upstream.NewRegistry(upstream.RegistryOptions{Logger: h.log})
		h.ownRegistry = true
	}
	h.Swap(snap)
	return h
}

// Swap makes snap the snapshot for every request that starts after it returns. Requests in
// flight finish on the snapshot they started with. Swap binds each site to the live state of
// its origins (kept across snapshots for origins that did not change) before publishing;
// snap must not be served by another Handler.
func (h *Handler) Swap(snap *snapshot.Snapshot) {
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	keys := make([]string, 0, len(snap.Sites()))
	for _, site := range snap.Sites() {
		site.Upstream = h.registry.GroupWithRetry(site.Name, site.Pools, site.Outlier, site.Retry.Policy)
		keys = append(keys, site.Name)
	}
	h.snap.Store(snap)
	h.registry.Retain(keys)
}

// Upstreams reports the live state of every site's origins, for the admin API.
func (h *Handler) Upstreams() []upstream.GroupStatus { return h.registry.Status() }

// Close stops the health checks the handler started itself.
func (h *Handler) Close() {
	if h.ownRegistry {
		h.registry.Close()
	}
}

// Snapshot returns the snapshot being served.
func (h *Handler) Snapshot() *snapshot.Snapshot { return h.snap.Load() }

// TransportOptions tune the connection pool toward origins. Timeouts of requests are per
// site (snapshot.TimeoutSpec); ConnectTimeout here is only the ceiling for any dial.
type TransportOptions struct {
	ConnectTimeout      time.Duration // ceiling for a dial; default 30s
	IdleConnTimeout     time.Duration // keep-alive connections are closed after this; default 90s
	MaxIdleConnsPerHost int           // default 256: enough for a 2-core node at full load
}

// NewTransport returns the keep-alive pool used toward origins. Compression is left to the
// origin and the client: the proxy never adds Accept-Encoding, so that what it stores is what
// the origin chose to send for the client's own Accept-Encoding (selected by Vary).
func NewTransport(o TransportOptions) *http.Transport {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:       nil,            // an edge never goes through an outbound proxy from the environment
		DialContext: dialContext(d), // a site's own connect timeout, if shorter, comes with the request

		MaxIdleConns:        4 * o.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost: o.MaxIdleConnsPerHost,
		IdleConnTimeout:     o.IdleConnTimeout,
		// First-byte, idle and total timeouts are per site and per attempt (attempt.go).
		TLSHandshakeTimeout:    10 * time.Second, // an origin that accepts TCP but stalls TLS
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// exchange is the per-request state that flows through the handler.
type exchange struct {
	site   *snapshot.Site
	rid    string
	scheme string
	start  time.Time
	status int // what the client got, for the access log
	cs     string
	cache  snapshot.CacheSettings // the site's cache settings for this request's path; set by serveCached
}

// ServeHTTP is the request path, top to bottom.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{rid: h.ridPrefix + strconv.FormatUint(h.ridSeq.Add(1), 36), scheme: "http"}
	if r.TLS != nil {
		x.scheme = "https"
	}
	h.health.requests.Add(1)
	lw := &logWriter{ResponseWriter: w} // also tells recoverRequest whether headers went out
	w = lw
	defer h.countResponse(lw, x) // runs last: after recoverRequest wrote any 500
	if h.accessLog {
		x.start = h.now()
		defer func() { h.logAccess(r, x, lw) }()
	}
	defer h.recoverRequest(w, r, x, lw) // runs before logAccess, which then logs the 500
	w.Header()["X-Request-Id"] = []string{x.rid}
	if h.looped(r.Header) {
		// The request went out from this node and came back: a bundle points a site's origin
		// at the CDN. Failing now, as the node's own error, stops the recursion at once.
		h.writeError(w, r, x, &Error{Status: http.StatusLoopDetected, Source: SourceInternal, Detail: "loop-detected"})
		return
	}

	x.site = h.snap.Load().Site(r.Host)
	if x.site == nil {
		h.writeError(w, r, x, &Error{Status: http.StatusMisdirectedRequest, Source: SourceClient, Detail: "unknown-host"})
		return
	}
	if p := r.Header.Get("X-Forwarded-Proto"); (p == "http" || p == "https") && len(x.site.TrustedProxies) > 0 && clientip.Trusted(clientip.Peer(r), x.site.TrustedProxies) {
		// Behind a trusted TLS-terminating balancer the scheme is the client's: it keys
		// the cache, so that an http redirect to https is never served to https clients.
		x.scheme = p
	}
	if r.Method == http.MethodConnect || r.URL.Path == "" && r.URL.Opaque == "" || r.URL.Path != "" && r.URL.Path[0] != '/' {
		h.writeError(w, r, x, &Error{Status: http.StatusBadRequest, Source: SourceClient, Detail: "bad-request-target"})
		return
	}
	if h.stages != nil {
		if v, stage, blocked := h.stages.Run(r, x.site.Name); blocked {
			detail := v.Reason
			if detail == "" {
				detail = "blocked-by-" + stage
			}
			if v.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(int64((v.RetryAfter+time.Second-1)/time.Second), 10))
			}
			h.writeError(w, r, x, &Error{Status: v.Status, Source: SourceClient, Detail: detail})
			return
		}
	}

	if h.robots != nil && r.URL.Path == "/robots.txt" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if m := h.robots(x.site.Name); m != nil {
			h.serveRobots(w, r, x, m)
			return
		}
	}
	if proto := upgradeType(r.Header); proto != "" {
		h.serveUpgrade(w, r, x)
		return
	}
	if hasHopHeaders(r.Header) {
		// Fields that describe the client's connection (and any it names in Connection)
		// are not part of the request: the origin never sees them, so they must not
		// select a cache variant either, or a client could poison a Vary key.
		r = r.WithContext(r.Context())
		r.Header = r.Header.Clone()
		removeHopHeaders(r.Header, false)
	}
	if h.cacheable(r, x) {
		h.serveCached(w, r, x)
		return
	}
	h.servePass(w, r, x, "fwd=bypass", "")
}

// cacheable says whether the request may be answered from the cache: caching is on for the
// request's path (the site's cache settings, or its first cache rule that matches), and the
// request is a GET or HEAD. Requests carrying Authorization always reach the origin, which
// alone decides who may see what, and their responses are not stored (Varnish's default;
// RFC 9111 §3.5 allows storing some, never requires it).
func (h *Handler) cacheable(r *http.Request, x *exchange) bool {
	if h.store == nil {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if _, auth := r.Header["Authorization"]; auth {
		return false
	}
	// The settings for the path, chosen once: serveCached uses them for every decision.
	x.cache = x.site.CacheFor(r.URL.Path)
	return x.cache.Enabled
}

// outbound builds the request sent to origin o. It never modifies r. When fill is set the
// request is a cache fill: a plain GET without the client's conditionals or range, so that the
// full representation can be stored and shared.
func (h *Handler) outbound(ctx context.Context, r *http.Request, x *exchange, o *upstream.Origin, fill bool) *http.Request {
	out := r.Clone(ctx)
	out.RequestURI = ""
	ou := o.URL()
	out.URL = &url.URL{
		Scheme:   ou.Scheme,
		Host:     ou.Host,
		Path:     ou.Path + r.URL.Path,
		RawPath:  ou.Path + r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery,
	}
	out.Host = r.Host
	if x.site.OriginHost != "" {
		out.Host = x.site.OriginHost
	}
	out.Close = false
	upgrade := upgradeType(r.Header) != ""
	removeHopHeaders(out.Header, upgrade)
	if fill {
		out.Method = http.MethodGet
		out.Body = http.NoBody
		out.ContentLength = 0
		for _, k := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range", "Cache-Control", "Pragma"} {
			delete(out.Header, k)
		}
	}
	if r.ContentLength == 0 && !fill {
		out.Body = http.NoBody
	}
	xff := forwardedFor(r, x.site.TrustedProxies)
	out.Header["X-Forwarded-For"] = []string{xff}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "" || !clientip.Trusted(clientip.Peer(r), x.site.TrustedProxies) {
		out.Header["X-Forwarded-Proto"] = []string{x.scheme}
	}
	if _, ok := out.Header["X-Forwarded-Host"]; !ok || !clientip.Trusted(clientip.Peer(r), x.site.TrustedProxies) {
		out.Header["X-Forwarded-Host"] = []string{r.Host}
	}
	if v := r.Header.Get("Via"); v != "" {
		out.Header["Via"] = []string{v + ", " + h.via}
	} else {
		out.Header["Via"] = []string{h.via}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // stop net/http from adding its own
	}
	return out
}

// roundTrip sends r to the site's origins, pool by pool, and returns the first answer it
// can use. A failed attempt is tried again on another origin when nothing has reached the
// client yet and it is safe: a connection that was never made (any request without a body),
// or a timeout or 5xx answer to an idempotent request without a body. Retries are bounded
// by the site's attempt count and its retry budget, so that a sick origin is not buried.
// When every attempt fails, the last origin answer (a 5xx) is returned as it is; without
// one, the last error.
func (h *Handler) roundTrip(ctx context.Context, r *http.Request, x *exchange, fill bool, extra http.Header) (*http.Response, *Error) {
	g := x.site.Upstream
	retry := x.site.Retry
	noBody := fill || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	idempotent := fill || retry.Idempotent[r.Method]
	var tried []*upstream.Origin
	var last *Error
	var lastResp *http.Response
	g.Budget().Request()
	panicking := false // the first origin was picked although none was available
	for attempt := 0; ; attempt++ {
		if attempt >= retry.Attempts {
			break
		}
		var o *upstream.Origin
		switch {
		case attempt == 0:
			o = g.Pick(tried)
			panicking = o != nil && !o.Available()
		case panicking:
			o = g.Pick(tried)
		default:
			o = g.PickAvailable(tried) // a retry never goes to an origin known to be down
		}
		if o == nil || attempt > 0 && !g.Budget().TryRetry() {
			break
		}
		tried = append(tried, o)
		resp, err, res := h.try(ctx, r, x, o, fill, extra)
		if err == nil && (res == upstream.Success || !idempotent || !noBody) {
			if lastResp != nil {
				lastResp.Body.Close() // not drained: a stalled 5xx body must not delay the answer
			}
			return resp, nil
		}
		if err != nil && err.Source == SourceClient {
			if lastResp != nil {
				lastResp.Body.Close()
			}
			return nil, err
		}
		retryable := noBody && (res == upstream.ConnectError || idempotent)
		if err == nil { // a 5xx answer to an idempotent request: keep it in case it is the last
			if lastResp != nil {
				lastResp.Body.Close()
			}
			lastResp, last = resp, nil
		} else {
			last = err
		}
		if !retryable {
			break
		}
		h.log.Debug("origin attempt failed, trying another", "site", x.site.Name, "origin", o.URL().Host, "attempt", attempt+1, "err", err)
	}
	if lastResp != nil {
		return lastResp, nil
	}
	if last == nil {
		last = &Error{Status: http.StatusBadGateway, Source: SourceOrigin, Detail: "no-origin"}
	}
	return nil, last
}

// servePass forwards the request to an origin and streams the answer back, storing nothing.
func (h *Handler) servePass(w http.ResponseWriter, r *http.Request, x *exchange, fwd, detail string) {
	resp, err := h.roundTrip(r.Context(), r, x, false, nil)
	if err != nil {
		h.writeError(w, r, x, err)
		return
	}
	defer resp.Body.Close()
	if r.Method != http.MethodGet && r.Method != http.MethodHead && h.store != nil {
		h.invalidate(r, x, resp)
	}
	cs := h.name + "; " + fwd + "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	if detail != "" {
		cs += "; detail=" + detail
	}
	h.writeUpstream(w, r, x, resp, cs)
}

// invalidate applies RFC 9111 §4.4 after an unsafe request.
func (h *Handler) invalidate(r *http.Request, x *exchange, resp *http.Response) {
	target := &url.URL{Scheme: x.scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	for _, raw := range cachepolicy.InvalidationTargets(r.Method, target, resp.StatusCode, resp.Header) {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		key, err := cachepolicy.CacheKey(u.Scheme, u.Host, u)
		if err != nil {
			continue
		}
		if n := h.store.PurgeURL(key); n > 0 {
			h.log.Debug("invalidated after unsafe method", "method", r.Method, "key", key, "objects", n)
		}
	}
}

// writeUpstream copies an origin response to the client, streaming the body.
func (h *Handler) writeUpstream(w http.ResponseWriter, r *http.Request, x *exchange, resp *http.Response, cs string) {
	hdr := w.Header()
	for k, v := range resp.Header {
		hdr[k] = v
	}
	removeHopHeaders(hdr, false)
	delete(hdr, "Cache-Tag")
	delete(hdr, "Surrogate-Key")
	hdr["Cache-Status"] = []string{cs}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		hdr["Trailer"] = names
	}
	x.cs = cs
	x.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	if err := copyBody(w, resp.Body, resp.ContentLength < 0); err != nil {
		h.abort(r, x, err)
	}
	for k, v := range resp.Trailer {
		hdr[http.TrailerPrefix+k] = v
	}
}

// copyBody streams src to w. flush pushes each chunk to the client at once, for responses of
// unknown length (server-sent events, long polls), as httputil.ReverseProxy does.
func copyBody(w http.ResponseWriter, src io.Reader, flush bool) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			if flush {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

var errClientGone = errors.New("client went away")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// abort ends a response whose body could not be completed. Panicking with
// http.ErrAbortHandler is net/http's documented way to make the client see a broken
// response (connection reset, or an RST_STREAM in HTTP/2) instead of a clean short body that
// it might believe complete.
func (h *Handler) abort(r *http.Request, x *exchange, err error) {
	if errors.Is(err, errClientGone) || r.Context().Err() != nil {
		return
	}
	h.log.Warn("response body truncated", "site", x.site.Name, "path", r.URL.Path, "request_id", x.rid, "err", err)
	panic(http.ErrAbortHandler)
}

// writeError is the one function that writes error responses: a plain page with the status,
// a short reason and the request id, and a Cache-Status whose detail says why.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, x *exchange, e *Error) {
	status := e.Status
	if status == 499 {
		return // the client is gone; nobody to answer
	}
	if e.Source != SourceClient {
		h.log.Warn("request failed", "status", status, "detail", e.Detail, "source", e.Source.String(),
			"host", r.Host, "path", r.URL.Path, "request_id", x.rid, "err", e.Err)
	}
	cs := h.name + "; fwd=miss; detail=" + e.Detail
	if e.Source == SourceClient {
		cs = h.name + "; detail=" + e.Detail
	}
	h.countError(e)
	x.cs, x.status = cs, status
	hdr := w.Header()
	hdr["Cache-Status"] = []string{cs}
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hdr["Cache-Control"] = []string{"no-store"}
	body := strconv.Itoa(status) + " " + http.StatusText(status) + "\n" + e.Detail + "\nrequest id: " + x.rid + "\n"
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
