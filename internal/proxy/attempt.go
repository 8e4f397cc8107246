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
	if failureStatus(resp.StatusCode) || resp.StatusCode == http.StatusSwitchingProtocols {
		// A 5xx is a failure whatever its body; a tunnel's life is not the origin's
		// latency. Both are settled now.
		if failureStatus(resp.StatusCode) {
			res = upstream.Failure
		}
		att.End(res, latency)
		att = nil
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &tunnelBody{ReadWriteCloser: rwc, done: func() { stopTotal(); cancel(nil) }}
			return resp, nil, res
		}
	}
	// Otherwise the attempt is settled when its body ends: a success only if the body
	// arrives whole, so that an origin sending headers and then stalling is ejected like
	// one that times out (and counts once, not as a success and a failure).
	resp.Body = newGuardedBody(resp.Body, actx, ctx, t.Idle, func() { stopTotal(); cancel(nil) }, cancel, att, latency)
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
// attempt's context when closed, and settles the attempt: Success when the body ends whole
// (or is closed early by us), Timeout or Failure when it breaks off, Canceled when the
// client went away.
type guardedBody struct {
	rc      io.ReadCloser
	ctx     context.Context // the attempt's
	client  context.Context // the caller's: its end is not the origin's fault
	idle    time.Duration
	timer   *time.Timer
	release func()
	att     *upstream.Attempt // nil when already settled (5xx)
	latency time.Duration
}

func newGuardedBody(rc io.ReadCloser, ctx, client context.Context, idle time.Duration, release func(), cancel context.CancelCauseFunc, att *upstream.Attempt, latency time.Duration) *guardedBody {
	g := &guardedBody{rc: rc, ctx: ctx, client: client, idle: idle, release: release, att: att, latency: latency,
		timer: time.AfterFunc(idle, func() { cancel(errIdleTimeout) })}
	g.timer.Stop() // armed only inside Read
	return g
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.timer.Reset(g.idle)
	n, err := g.rc.Read(p)
	g.timer.Stop()
	switch {
	case err == io.EOF:
		g.settle(upstream.Success)
	case err != nil:
		if cause := context.Cause(g.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause // say which timeout cut the body
		}
		switch {
		case g.client.Err() != nil:
			g.settle(upstream.Canceled)
		case errors.Is(err, errIdleTimeout), errors.Is(err, errTotalTimeout):
			g.settle(upstream.Timeout)
		default:
			g.settle(upstream.Failure)
		}
	}
	return n, err
}

func (g *guardedBody) settle(r upstream.Result) {
	if g.att != nil {
		g.att.End(r, g.latency)
		g.att = nil
	}
}

func (g *guardedBody) Close() error {
	g.timer.Stop()
	err := g.rc.Close()
	g.settle(upstream.Success) // closed before the end by us (HEAD, a client gone): the origin did its part
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
