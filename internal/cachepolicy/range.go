package cachepolicy

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// RangeKind is how a Range request is answered from a complete stored object. Append only.
type RangeKind int

const (
	// RangeNone: serve the whole object with 200. Returned without a Range header and
	// whenever RFC 9110 §14.2 lets a server ignore it: a unit other than bytes, several
	// ranges, a syntax error, a failed If-Range, an unknown size.
	RangeNone RangeKind = iota
	// RangeOK: serve 206 with bytes start..end, both inclusive.
	RangeOK
	// RangeUnsatisfiable: serve 416 with "Content-Range: bytes */size".
	RangeUnsatisfiable
)

// ParseRange evaluates the Range and If-Range request headers against a complete object of
// size bytes and its stored response header (RFC 9110 §14). Only a single byte range is
// served: several ranges give RangeNone, since serving the whole 200 is allowed (§14.2) and
// spares multipart/byteranges. Suffix ranges ("bytes=-500") take the last bytes, or the whole
// object when shorter; open ranges ("bytes=9500-") run to the end; an end past the object is
// clipped. A range starting at or past size, a zero suffix, or any range on an empty object
// is unsatisfiable (§14.1.1). start and end are 0 unless kind is RangeOK.
//
// If-Range (§13.1.5) must match exactly or the range is ignored: an entity-tag by strong
// comparison with a stored strong ETag, or a date equal to Last-Modified when that date is
// strong, i.e. at least one second before the stored Date.
func ParseRange(reqH http.Header, size int64, storedH http.Header) (start, end int64, kind RangeKind) {
	r := fieldValues(reqH, "Range")
	if len(r) != 1 || size < 0 {
		return 0, 0, RangeNone
	}
	if ir := fieldValues(reqH, "If-Range"); len(ir) > 0 && (len(ir) > 1 || !ifRangeMatches(ir[0], storedH)) {
		return 0, 0, RangeNone
	}
	unit, set, ok := strings.Cut(r[0], "=")
	if !ok || !strings.EqualFold(trimOWS(unit), "bytes") {
		return 0, 0, RangeNone
	}
	specs := splitList(set)
	if len(specs) != 1 {
		return 0, 0, RangeNone
	}
	first, last, ok := strings.Cut(specs[0], "-")
	if !ok {
		return 0, 0, RangeNone
	}
	first, last = trimOWS(first), trimOWS(last)
	if first == "" {
		n, ok := parseDigits(last)
		switch {
		case !ok:
			return 0, 0, RangeNone
		case n == 0 || size == 0:
			return 0, 0, RangeUnsatisfiable
		}
		return size - min(n, size), size - 1, RangeOK
	}
	f, ok := parseDigits(first)
	if !ok {
		return 0, 0, RangeNone
	}
	l := int64(math.MaxInt64)
	if last != "" {
		if l, ok = parseDigits(last); !ok || l < f {
			return 0, 0, RangeNone
		}
	}
	if f >= size {
		return 0, 0, RangeUnsatisfiable
	}
	return f, min(l, size-1), RangeOK
}

// parseDigits reads a non-negative decimal, saturating at MaxInt64: a huge position is still
// a position (past any object), not a syntax error.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// ifRangeMatches evaluates one If-Range value against the stored response.
func ifRangeMatches(v string, storedH http.Header) bool {
	v = trimOWS(v)
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		t, ok := parseETag(v)
		if !ok || t.weak {
			return false
		}
		for _, s := range storedETags(storedH) {
			if t.matches(s, true) {
				return true
			}
		}
		return false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return false
	}
	lm, ok := httpDate(fieldValues(storedH, "Last-Modified"))
	if !ok || !t.Equal(lm) {
		return false
	}
	date, ok := httpDate(fieldValues(storedH, "Date"))
	return ok && !lm.Add(time.Second).After(date)
}
