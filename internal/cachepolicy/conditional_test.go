package cachepolicy

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestNotModified(t *testing.T) {
	lm := t0.Add(-time.Hour)
	storedH := hdr("ETag", `W/"v1"`, "Last-Modified", date(lm), "Date", date(t0))
	strongH := hdr("ETag", `"v1"`, "Last-Modified", date(lm))
	tests := []struct {
		name   string
		method string
		req    http.Header
		stored http.Header
		want   bool
	}{
		{"no conditionals", "GET", hdr(), storedH, false},
		{"INM weak matches weak (§13.1.2 weak comparison)", "GET", hdr("If-None-Match", `W/"v1"`), storedH, true},
		{"INM strong matches weak", "GET", hdr("If-None-Match", `"v1"`), storedH, true},
		{"INM weak matches strong", "GET", hdr("If-None-Match", `W/"v1"`), strongH, true},
		{"INM mismatch", "GET", hdr("If-None-Match", `"v2"`), storedH, false},
		{"INM list", "GET", hdr("If-None-Match", `"a", "b,c", W/"v1"`), storedH, true},
		{"INM list over lines", "GET", hdr("If-None-Match", `"a"`, "If-None-Match", `"v1"`), storedH, true},
		{"INM star", "GET", hdr("If-None-Match", "*"), storedH, true},
		{"INM on HEAD", "HEAD", hdr("If-None-Match", `"v1"`), storedH, true},
		{"INM on POST", "POST", hdr("If-None-Match", `"v1"`), storedH, false},
		{"INM is case-sensitive", "GET", hdr("If-None-Match", `"V1"`), storedH, false},
		{"INM beats IMS (§13.2.2)", "GET", hdr("If-None-Match", `"v2"`, "If-Modified-Since", date(t0)), storedH, false},
		{"IMS equal to Last-Modified", "GET", hdr("If-Modified-Since", date(lm)), storedH, true},
		{"IMS after Last-Modified", "GET", hdr("If-Modified-Since", date(t0)), storedH, true},
		{"IMS before Last-Modified", "GET", hdr("If-Modified-Since", date(lm.Add(-time.Second))), storedH, false},
		{"IMS without Last-Modified (Date is not used)", "GET", hdr("If-Modified-Since", date(t0)), hdr("Date", date(t0)), false},
		{"IMS invalid", "GET", hdr("If-Modified-Since", "yesterday"), storedH, false},
		{"IMS two lines", "GET", hdr("If-Modified-Since", date(t0), "If-Modified-Since", date(t0)), storedH, false},
		{"IMS on HEAD", "HEAD", hdr("If-Modified-Since", date(t0)), storedH, true},
		{"If-Match fails: 412, not 304", "GET", hdr("If-Match", `"v2"`, "If-None-Match", `"v1"`), strongH, false},
		{"If-Match uses strong comparison", "GET", hdr("If-Match", `"v1"`, "If-None-Match", `"v1"`), storedH, false},
		{"If-Match passes", "GET", hdr("If-Match", `"v1"`, "If-None-Match", `"v1"`), strongH, true},
		{"If-Match star passes", "GET", hdr("If-Match", "*", "If-None-Match", `"v1"`), strongH, true},
		{"If-Unmodified-Since fails", "GET", hdr("If-Unmodified-Since", date(lm.Add(-time.Second)), "If-None-Match", `"v1"`), storedH, false},
		{"If-Unmodified-Since passes", "GET", hdr("If-Unmodified-Since", date(lm), "If-None-Match", `"v1"`), storedH, true},
		{"unquoted stored ETag", "GET", hdr("If-None-Match", "abc"), hdr("ETag", "abc"), true},
		{"no stored validator", "GET", hdr("If-None-Match", `"v1"`), hdr(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotModified(tt.method, tt.req, tt.stored); got != tt.want {
				t.Errorf("NotModified = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestParseETagRejects lists entity-tags that must not be read (and so never match).
func TestParseETagRejects(t *testing.T) {
	for _, in := range []string{``, `W/`, `"`, `"a"b"`, `a b`, `"a`, `W/"a`, `a,b`, `a"`} {
		t.Run(in, func(t *testing.T) {
			if tag, ok := parseETag(in); ok {
				t.Errorf("parseETag(%q) = %+v, want rejected", in, tag)
			}
		})
	}
}

func TestValidators(t *testing.T) {
	lm := date(t0)
	tests := []struct {
		name   string
		stored http.Header
		want   http.Header
	}{
		{"ETag and Last-Modified", hdr("ETag", `"v1"`, "Last-Modified", lm), hdr("If-None-Match", `"v1"`, "If-Modified-Since", lm)},
		{"all ETags", hdr("ETag", `W/"a"`, "ETag", `"b"`), hdr("If-None-Match", `W/"a", "b"`)},
		{"Last-Modified verbatim", hdr("Last-Modified", " Sunday, 06-Nov-94 08:49:37 GMT"), hdr("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")},
		{"invalid validators dropped", hdr("ETag", `"a`, "Last-Modified", "never"), hdr()},
		{"none", hdr("Date", lm), hdr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Validators(tt.stored)
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validators = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMerge304(t *testing.T) {
	st := hdr("Date", "old", "ETag", `"v1"`, "Content-Length", "100", "Content-Encoding", "br", "Content-Type", "text/html",
		"Cache-Control", "max-age=60", "Vary", "Accept-Encoding", "X-Keep", "1")
	tests := []struct {
		name string
		nm   http.Header
		want http.Header
	}{
		{"updates replace", hdr("Date", "new", "Cache-Control", "max-age=600", "ETag", `"v1"`, "Age", "3"),
			hdr("Date", "new", "ETag", `"v1"`, "Content-Length", "100", "Content-Encoding", "br", "Content-Type", "text/html",
				"Cache-Control", "max-age=600", "Vary", "Accept-Encoding", "X-Keep", "1", "Age", "3")},
		{"kept fields and hop-by-hop", hdr("Content-Length", "0", "Content-Encoding", "gzip", "Content-Range", "bytes 0-1/2", "Vary", "Cookie",
			"Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked", "Cache-Control", "no-cache"),
			hdr("Date", "old", "ETag", `"v1"`, "Content-Length", "100", "Content-Encoding", "br", "Content-Type", "text/html",
				"Cache-Control", "no-cache", "Vary", "Accept-Encoding", "X-Keep", "1")},
		{"multi-line field replaced whole", hdr("Cache-Control", "public", "Cache-Control", "max-age=5"),
			hdr("Date", "old", "ETag", `"v1"`, "Content-Length", "100", "Content-Encoding", "br", "Content-Type", "text/html",
				"Cache-Control", "public", "Cache-Control", "max-age=5", "Vary", "Accept-Encoding", "X-Keep", "1")},
		{"non-canonical key in 304", http.Header{"cache-control": {"max-age=1"}},
			hdr("Date", "old", "ETag", `"v1"`, "Content-Length", "100", "Content-Encoding", "br", "Content-Type", "text/html",
				"Cache-Control", "max-age=1", "Vary", "Accept-Encoding", "X-Keep", "1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, nmBefore := st.Clone(), tt.nm.Clone()
			got := Merge304(st, tt.nm)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Merge304 =\n%v\nwant\n%v", got, tt.want)
			}
			if !reflect.DeepEqual(st, before) || !reflect.DeepEqual(tt.nm, nmBefore) {
				t.Error("Merge304 modified an input")
			}
			got["X-Keep"][0] = "changed"
			if st.Get("X-Keep") != "1" {
				t.Error("Merge304 result shares slices with the stored header")
			}
		})
	}
}
