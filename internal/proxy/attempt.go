package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"time"

	"rhizome/internal/upstream"
)

// connectTimeoutKey carries a site's connect timeout to the transport's dialer: the
// transport is shared by every site, the timeout is not.
type connectTimeoutKey struct{}

// Causes of an origin request's cancellation, so that a timeout is told from a client gone.
var (
	errFirstByteTimeout = errors.New("no response headers within the first-byte timeout")
	errIdleTimeout      = errors.New("origin body stalled past the idle timeout")
	errTotalTimeout     = errors.New("origin exchange exceeded the total timeout")
)

// dialContext applies the connect timeout carried by ctx.
func dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if t, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		return d.DialContext(ctx, network, addr)
	}
}

// try sends one attempt to origin o under the site's timeouts and reports its outcome to
// the origin's live state (latency, passive outlier detection). The returned body, if any,
// enforces the idle and total timeouts and must be closed.
func (h *Handler) try(ctx context.Context, r *http.Request, x *exchange, o *upstream.Origin, fill bool, extra http.Header) (*http.Response, *Error, upstream.Result) {
	t := x.site.Timeouts
	actx, cancel := context.WithCancelCause(ctx)
	stopTotal := func() bool { return false }
	if t.Total > 0 {
		stopTotal = time.AfterFunc(t.Total, func() { cancel(errTotalTimeout) }).Stop
	}
	actx = context.WithValue(actx, connectTimeoutKey{}, t.Connect)
	out := h.outbound(actx, r, x, o, fill)
	for k, v := range extra {
		out.Header[k] = v
	}
	att := o.Begin()
	start := time.Now()
	// The first-byte timer starts once the request is written, so that a client's slow
	// upload is never counted against the origin.
	ttfb := time.AfterFunc(MaxFirstByteWait, func() { cancel(errFirstByteTimeout) })
	out = out.WithContext(httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { ttfb.Reset(t.FirstByte) },
	}))
	resp, err := h.transport.RoundTrip(out)
	if !ttfb.Stop() && err == nil && errors.Is(context.Cause(actx), errFirstByteTimeout) {
		// The timer fired as the headers arrived: the body is already cancelled.
		resp.Body.Close()
		resp, err = nil, errFirstByteTimeout
	}
	latency := time.Since(start)
	if err != nil {
		cause := context.Cause(actx)
		stopTotal()
		cancel(nil)
		switch {
		case ctx.Err() != nil:
			att.End(upstream.Canceled, latency)
			return nil, &Error{Status: 499, Source: SourceClient, Detail: "client-closed", Err: err}, upstream.Canceled
		case errors.Is(cause, errFirstByteTimeout), errors.Is(cause, errTotalTimeout), errors.Is(err, errFirstByteTimeout):
			if cause == nil {
				cause = err
			}
			att.End(upstream.Timeout, latency)
			return nil, &Error{Status: http.StatusGatewayTimeout, Source: SourceOrigin, Detail: "origin-timeout", Err: originError(o.URL().Host, cause).Err}, upstream.Timeout
		}
		e := originError(o.URL().Host, err)
		res := upstream.Failure
		switch e.Detail {
		case "origin-unreachable":
			res = upstream.ConnectError
		case "origin-timeout":
			res = upstream.Timeout
		}
		att.End(res, latency)
		return nil, e, res
	}
	res := upstream.Success
	if failureStatus(resp.StatusCode) {
		res = upstream.Failure
	}
	att.End(res, latency)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &tunnelBody{ReadWriteCloser: rwc, done: func() { stopTotal(); cancel(nil) }}
			return resp, nil, res
		}
	}
	resp.Body = newGuardedBody(resp.Body, actx, ctx, t.Idle, func() { stopTotal(); cancel(nil) }, cancel, o)
	return resp, nil, res
}

// MaxFirstByteWait bounds the wait for a request to be written (a client's upload) before
// the first-byte timeout starts; what bounds an upload is the client, not the origin.
const MaxFirstByteWait = 24 * time.Hour

// failureStatus: the 5xx answers that say the origin could not serve, counted against its
// health and retried elsewhere for idempotent requests. 501 and 505 are the origin's
// deliberate word about the request, not a failure.
func failureStatus(code int) bool {
	return code == 500 || code == 502 || code == 503 || code == 504
}

// guardedBody enforces the idle timeout while the origin is being read (not while the
// client is being written to: a paused download is the client's business), releases the
// attempt's context when closed, and reports a body that breaks off to the origin's health,
// so that an origin that sends headers and then stalls is ejected like one that times out.
type guardedBody struct {
	rc       io.ReadCloser
	ctx      context.Context // the attempt's
	client   context.Context // the caller's: its end is not the origin's fault
	idle     time.Duration
	timer    *time.Timer
	release  func()
	origin   *upstream.Origin
	reported bool
}

func newGuardedBody(rc io.ReadCloser, ctx, client context.Context, idle time.Duration, release func(), cancel context.CancelCauseFunc, o *upstream.Origin) *guardedBody {
	g := &guardedBody{rc: rc, ctx: ctx, client: client, idle: idle, release: release, origin: o,
		timer: time.AfterFunc(idle, func() { cancel(errIdleTimeout) })}
	g.timer.Stop() // armed only inside Read
	return g
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.timer.Reset(g.idle)
	n, err := g.rc.Read(p)
	g.timer.Stop()
	if err != nil && err != io.EOF {
		cause := context.Cause(g.ctx)
		if cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause // say which timeout cut the body
		}
		if !g.reported && g.client.Err() == nil {
			g.reported = true
			res := upstream.Failure
			if errors.Is(err, errIdleTimeout) || errors.Is(err, errTotalTimeout) {
				res = upstream.Timeout
			}
			g.origin.Begin().End(res, 0)
		}
	}
	return n, err
}

func (g *guardedBody) Close() error {
	g.timer.Stop()
	err := g.rc.Close()
	g.release()
	return err
}

// tunnelBody is an upgraded connection's body: no idle timeout (WebSocket connections are
// quiet for long stretches), and the attempt's context lives until the tunnel closes.
type tunnelBody struct {
	io.ReadWriteCloser
	done func()
}

func (t *tunnelBody) Close() error {
	err := t.ReadWriteCloser.Close()
	t.done()
	return err
}

// CloseWrite passes a client's half-close on to the origin.
func (t *tunnelBody) CloseWrite() error {
	if cw, ok := t.ReadWriteCloser.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.ReadWriteCloser.Close()
}
