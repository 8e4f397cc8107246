package cachepolicy

import (
	"net/http"
	"time"
)

// t0 is the reference instant of the tests: responses are received at t0 unless a test
// says otherwise.
var t0 = time.Date(2024, 1, 2, 12, 0, 0, 0, time.UTC)

// hdr builds a header from name, value pairs, adding repeated names as separate lines.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// date formats an instant as an HTTP-date.
func date(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func sec(n int) time.Duration { return time.Duration(n) * time.Second }

// stored is a response received at t0, requested one second earlier.
func stored(status int, h http.Header) *Stored {
	return &Stored{Status: status, Header: h, RequestTime: t0.Add(-time.Second), ResponseTime: t0}
}
