package cachepolicy

import (
	"net/http"
	"testing"
)

func TestVaryKey(t *testing.T) {
	tests := []struct {
		name   string
		vary   []string
		req    http.Header
		want   string
		wantOK bool
	}{
		{"no Vary", nil, hdr("Accept", "x"), "", true},
		{"empty Vary", []string{" , "}, hdr("Accept", "x"), "", true},
		{"star", []string{"*"}, hdr(), "", false},
		{"star in a list", []string{"Accept", "Cookie, *"}, hdr(), "", false},
		{"one header", []string{"Accept-Language"}, hdr("Accept-Language", "en"), "accept-language=en", true},
		{"absent header is a bare name", []string{"Accept-Language"}, hdr(), "accept-language", true},
		{"empty header differs from absent", []string{"Accept-Language"}, hdr("Accept-Language", ""), "accept-language=", true},
		{"names sorted and deduplicated", []string{"X-B, x-a", "X-B"}, hdr("X-A", "1", "X-B", "2"), "x-a=1&x-b=2", true},
		{"lines joined, spaces around commas trimmed", []string{"Accept"}, hdr("Accept", "text/html ,  application/json", "Accept", "*/*"), "accept=text%2Fhtml%2Capplication%2Fjson%2C%2A%2F%2A", true},
		{"other values verbatim", []string{"User-Agent"}, hdr("User-Agent", "Mozilla/5.0 (X11)"), "user-agent=Mozilla%2F5.0+%28X11%29", true},
		{"accept-encoding set", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, BR;q=0.5, identity;q=0, gzip"), "accept-encoding=br%2Cgzip", true},
		{"accept-encoding all refused", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip;q=0"), "accept-encoding=", true},
		{"separators in values escaped", []string{"X"}, hdr("X", "a=b&c"), "x=a%3Db%26c", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := VaryKey(tt.vary, tt.req)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("VaryKey = %q %v, want %q %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestVaryKeyEquivalence lists request pairs that must select the same variant, and pairs
// that must not.
func TestVaryKeyEquivalence(t *testing.T) {
	tests := []struct {
		name  string
		vary1 []string
		req1  http.Header
		vary2 []string
		req2  http.Header
		same  bool
	}{
		{"Vary order and case", []string{"Accept-Encoding, Accept"}, hdr("Accept", "a", "Accept-Encoding", "gzip"),
			[]string{"accept", "ACCEPT-ENCODING"}, hdr("Accept", "a", "Accept-Encoding", "gzip"), true},
		{"accept-encoding order and weights", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, deflate, br"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "br;q=1.0, GZIP;q=0.8,deflate"), true},
		{"accept-encoding split over lines", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, br"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "br", "Accept-Encoding", "gzip"), true},
		{"accept-encoding q=0 is absent coding", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, br;q=0"), true},
		{"whitespace around commas", []string{"Accept-Language"}, hdr("Accept-Language", "en,fr"),
			[]string{"Accept-Language"}, hdr("Accept-Language", " en , fr "), true},
		{"different coding sets", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"),
			[]string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, br"), false},
		{"order matters outside Accept-Encoding", []string{"Accept-Language"}, hdr("Accept-Language", "en, fr"),
			[]string{"Accept-Language"}, hdr("Accept-Language", "fr, en"), false},
		{"case matters outside Accept-Encoding", []string{"X"}, hdr("X", "a"), []string{"X"}, hdr("X", "A"), false},
		{"absent vs empty", []string{"X"}, hdr(), []string{"X"}, hdr("X", ""), false},
		{"values cannot forge a second header", []string{"A, B"}, hdr("A", "1&b=2"), []string{"A, B"}, hdr("A", "1", "B", "2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k1, _ := VaryKey(tt.vary1, tt.req1)
			k2, _ := VaryKey(tt.vary2, tt.req2)
			if (k1 == k2) != tt.same {
				t.Errorf("keys %q and %q: same = %v, want %v", k1, k2, k1 == k2, tt.same)
			}
		})
	}
}
