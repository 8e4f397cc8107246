package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Source says who caused an error, so that health reports can tell a node's own failures
// from its origins' (append only: the values are reported).
type Source int

const (
	SourceClient   Source = iota // the request was malformed or not allowed
	SourceOrigin                 // the origin failed or answered garbage
	SourceInternal               // rhizome itself failed
)

func (s Source) String() string {
	switch s {
	case SourceClient:
		return "client"
	case SourceOrigin:
		return "origin"
	default:
		return "internal"
	}
}

// Error is the one error type of the request path. Detail is a short token that goes into
// the Cache-Status "detail" parameter and the access log, so that an operator can see why a
// request failed without reading server logs.
type Error struct {
	Status int
	Source Source
	Detail string // e.g. "origin-unreachable", "origin-timeout", "origin-bad-response"
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%d %s (%s)", e.Status, e.Detail, e.Source)
	}
	return fmt.Sprintf("%d %s (%s): %v", e.Status, e.Detail, e.Source, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// originError classifies a transport error from an origin round trip.
func originError(origin string, err error) *Error {
	wrapped := fmt.Errorf("origin %s: %w", origin, err)
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return &Error{Status: http.StatusBadGateway, Source: SourceOrigin, Detail: "origin-unreachable", Err: wrapped}
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return &Error{Status: http.StatusGatewayTimeout, Source: SourceOrigin, Detail: "origin-timeout", Err: wrapped}
	case strings.Contains(err.Error(), "malformed HTTP"), strings.Contains(err.Error(), "invalid"),
		strings.Contains(err.Error(), "too many"), strings.Contains(err.Error(), "header"):
		return &Error{Status: http.StatusBadGateway, Source: SourceOrigin, Detail: "origin-bad-response", Err: wrapped}
	default:
		return &Error{Status: http.StatusBadGateway, Source: SourceOrigin, Detail: "origin-error", Err: wrapped}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
