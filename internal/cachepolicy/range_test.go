package cachepolicy

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRange(t *testing.T) {
	lm := t0.Add(-time.Hour)
	st := hdr("ETag", `"v1"`, "Last-Modified", date(lm), "Date", date(t0))
	tests := []struct {
		name       string
		req        http.Header
		size       int64
		stored     http.Header
		start, end int64
		kind       RangeKind
	}{
		{"no Range", hdr(), 10000, st, 0, 0, RangeNone},
		// RFC 9110 §14.1.2 examples on a 10000-byte representation.
		{"first 500 bytes", hdr("Range", "bytes=0-499"), 10000, st, 0, 499, RangeOK},
		{"second 500 bytes", hdr("Range", "bytes=500-999"), 10000, st, 500, 999, RangeOK},
		{"suffix: final 500 bytes", hdr("Range", "bytes=-500"), 10000, st, 9500, 9999, RangeOK},
		{"open: from 9500", hdr("Range", "bytes=9500-"), 10000, st, 9500, 9999, RangeOK},
		{"first byte", hdr("Range", "bytes=0-0"), 10000, st, 0, 0, RangeOK},
		{"last byte", hdr("Range", "bytes=-1"), 10000, st, 9999, 9999, RangeOK},
		{"end clipped", hdr("Range", "bytes=9000-20000"), 10000, st, 9000, 9999, RangeOK},
		{"suffix longer than object", hdr("Range", "bytes=-20000"), 10000, st, 0, 9999, RangeOK},
		{"huge end clipped", hdr("Range", "bytes=5-99999999999999999999999"), 10000, st, 5, 9999, RangeOK},
		{"unit case-insensitive, spaces", hdr("Range", "Bytes= 1-2 "), 10, st, 1, 2, RangeOK},
		{"empty list members ignored", hdr("Range", "bytes=1-2, ,"), 10, st, 1, 2, RangeOK},
		{"start past end", hdr("Range", "bytes=10000-"), 10000, st, 0, 0, RangeUnsatisfiable},
		{"huge start", hdr("Range", "bytes=99999999999999999999999-"), 10000, st, 0, 0, RangeUnsatisfiable},
		{"zero suffix", hdr("Range", "bytes=-0"), 10000, st, 0, 0, RangeUnsatisfiable},
		{"empty object", hdr("Range", "bytes=0-"), 0, st, 0, 0, RangeUnsatisfiable},
		{"empty object suffix", hdr("Range", "bytes=-5"), 0, st, 0, 0, RangeUnsatisfiable},
		{"If-Range strong ETag", hdr("Range", "bytes=0-1", "If-Range", `"v1"`), 10, st, 0, 1, RangeOK},
		{"If-Range other ETag", hdr("Range", "bytes=0-1", "If-Range", `"v2"`), 10, st, 0, 0, RangeNone},
		{"If-Range weak ETag never matches", hdr("Range", "bytes=0-1", "If-Range", `W/"v1"`), 10, st, 0, 0, RangeNone},
		{"If-Range against a weak stored ETag", hdr("Range", "bytes=0-1", "If-Range", `"v1"`), 10, hdr("ETag", `W/"v1"`), 0, 0, RangeNone},
		{"If-Range date equal and strong", hdr("Range", "bytes=0-1", "If-Range", date(lm)), 10, st, 0, 1, RangeOK},
		{"If-Range date differs", hdr("Range", "bytes=0-1", "If-Range", date(t0)), 10, st, 0, 0, RangeNone},
		{"If-Range date weak: Last-Modified within 1s of Date", hdr("Range", "bytes=0-1", "If-Range", date(t0)), 10, hdr("Last-Modified", date(t0), "Date", date(t0)), 0, 0, RangeNone},
		{"If-Range date without stored Date", hdr("Range", "bytes=0-1", "If-Range", date(lm)), 10, hdr("Last-Modified", date(lm)), 0, 0, RangeNone},
		{"If-Range failure beats unsatisfiable", hdr("Range", "bytes=50-", "If-Range", `"v2"`), 10, st, 0, 0, RangeNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end, kind := ParseRange(tt.req, tt.size, tt.stored)
			if start != tt.start || end != tt.end || kind != tt.kind {
				t.Errorf("ParseRange = %d %d %d, want %d %d %d", start, end, kind, tt.start, tt.end, tt.kind)
			}
		})
	}
}

// TestParseRangeIgnored lists Range headers that must be ignored (serve 200).
func TestParseRangeIgnored(t *testing.T) {
	for _, in := range []string{
		"bytes=0-1,5-6", "bytes=0-1, -5", "items=0-1", "bytes 0-1", "bytes=", "bytes=-", "bytes=5-1",
		"bytes=a-b", "bytes=-a", "bytes=1", "bytes=0x1-2", "bytes=+1-2", "bytes=-1-2", "bytes=1 - 2 - 3", "=0-1",
	} {
		t.Run(in, func(t *testing.T) {
			if s, e, k := ParseRange(hdr("Range", in), 100, hdr()); k != RangeNone {
				t.Errorf("ParseRange(%q) = %d %d %d, want RangeNone", in, s, e, k)
			}
		})
	}
	t.Run("two Range lines", func(t *testing.T) {
		if _, _, k := ParseRange(hdr("Range", "bytes=0-1", "Range", "bytes=2-3"), 100, hdr()); k != RangeNone {
			t.Errorf("kind = %d", k)
		}
	})
	t.Run("unknown size", func(t *testing.T) {
		if _, _, k := ParseRange(hdr("Range", "bytes=0-1"), -1, hdr()); k != RangeNone {
			t.Errorf("kind = %d", k)
		}
	})
	t.Run("invalid If-Range", func(t *testing.T) {
		if _, _, k := ParseRange(hdr("Range", "bytes=0-1", "If-Range", "soon"), 100, hdr()); k != RangeNone {
			t.Errorf("kind = %d", k)
		}
	})
}
