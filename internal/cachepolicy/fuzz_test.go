package cachepolicy

import (
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{
		"max-age=60", "public, s-maxage=600, stale-while-revalidate=30", `no-cache="Set-Cookie, X-A"`,
		`private="a`, "max-age=99999999999999999999", "max-age=-1, max-age=5", ",,=,", `"\`, "MAX-AGE=\"1\"",
	} {
		f.Add(s, "")
		f.Add(s, "stale-if-error=5, no-store")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		d := ParseDirectives([]string{a, b})
		for _, v := range []struct {
			dur time.Duration
			has bool
		}{{d.MaxAge, d.HasMaxAge}, {d.SMaxAge, d.HasSMaxAge}, {d.StaleWhileRevalidate, d.HasSWR}, {d.StaleIfError, d.HasSIE}} {
			if v.dur < 0 || v.dur > maxDelta || (!v.has && v.dur != 0) {
				t.Fatalf("duration out of range: %+v", d)
			}
		}
		for _, n := range append(append([]string(nil), d.NoCacheFields...), d.PrivateFields...) {
			if n == "" || n != textproto.CanonicalMIMEHeaderKey(n) {
				t.Fatalf("field name %q not canonical", n)
			}
		}
		// Without quotes, two lines mean the same as one line joined by a comma.
		if !strings.Contains(a+b, `"`) {
			if j := ParseDirectives([]string{a + "," + b}); !reflect.DeepEqual(d, j) {
				t.Fatalf("lines %q %q: %+v, joined: %+v", a, b, d, j)
			}
		}
		// The targeted field never panics and is used only when it parses.
		p := DefaultPolicy()
		if _, field := p.EffectiveDirectives(hdr("CDN-Cache-Control", a)); field != "CDN-Cache-Control" && field != "Cache-Control" {
			t.Fatalf("field %q", field)
		}
		_ = ParseRequest(hdr("Cache-Control", a, "Pragma", b))
	})
}

func FuzzCacheKey(f *testing.F) {
	for _, s := range [][3]string{
		{"https", "example.com", "/a?b=1"}, {"HTTP", "Example.COM:80", "/%7e/%2f?q=%zz"}, {"http", "", "http://[::1]:8080/x#f"},
		{"http", "h", "/a b"}, {"https", "h:0443", "//x/../y?"}, {"http", "[fe80::1%25eth0]", "/"}, {"ftp", "h", "/"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, scheme, host, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			u = &url.URL{Path: raw, RawQuery: host}
		}
		key, err := CacheKey(scheme, host, u)
		if err != nil {
			return
		}
		u2, err := url.Parse(key)
		if err != nil {
			t.Fatalf("key %q does not parse: %v", key, err)
		}
		again, err := CacheKey(u2.Scheme, u2.Host, u2)
		if err != nil || again != key {
			t.Fatalf("key %q not stable: %q, %v", key, again, err)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-499", "bytes=-500", "bytes=9500-", "bytes=0-1,2-3", "bytes=-0", "bytes=99999999999999999999-", "Bytes = 1 - 2"} {
		f.Add(s, "", int64(10000))
		f.Add(s, `"v1"`, int64(0))
	}
	f.Add("bytes=0-", "Tue, 02 Jan 2024 11:00:00 GMT", int64(1))
	f.Fuzz(func(t *testing.T, rng, ifRange string, size int64) {
		req := hdr("Range", rng)
		if ifRange != "" {
			req.Set("If-Range", ifRange)
		}
		st := hdr("ETag", `"v1"`, "Last-Modified", "Tue, 02 Jan 2024 11:00:00 GMT", "Date", "Tue, 02 Jan 2024 12:00:00 GMT")
		start, end, kind := ParseRange(req, size, st)
		switch kind {
		case RangeOK:
			if start < 0 || start > end || end >= size {
				t.Fatalf("ParseRange(%q, %d) = %d-%d", rng, size, start, end)
			}
		case RangeNone, RangeUnsatisfiable:
			if start != 0 || end != 0 {
				t.Fatalf("ParseRange(%q, %d) = %d-%d with kind %d", rng, size, start, end, kind)
			}
		default:
			t.Fatalf("kind %d", kind)
		}
	})
}

func FuzzVaryKey(f *testing.F) {
	for _, s := range [][3]string{
		{"Accept-Encoding", "Accept-Encoding", "gzip, br;q=0"}, {"accept, *", "Accept", "x"}, {"X-A, x-a", "X-A", `"a, b", c`},
		{"", "", ""}, {"Cookie", "Cookie", "a=1&b=2"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, vary, name, value string) {
		req := http.Header{}
		if name != "" {
			req[name] = []string{value}
		}
		key, ok := VaryKey([]string{vary}, req)
		if !ok {
			if key != "" || !varyStar([]string{vary}) {
				t.Fatalf("VaryKey(%q) = %q, false without *", vary, key)
			}
			return
		}
		// The order of the Vary names and their case never change the key.
		names := splitNames(vary)
		for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
			names[i], names[j] = names[j], asciiUpper(names[i])
		}
		if again, ok := VaryKey([]string{strings.Join(names, ", ")}, req); !ok || again != key {
			t.Fatalf("VaryKey(%q) = %q, reversed %q", vary, key, again)
		}
	})
}

// asciiUpper upper-cases ASCII letters only: header names are ASCII, and Unicode case
// mapping does not round-trip.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
