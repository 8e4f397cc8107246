package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.1:5000", nil, "192.0.2.1"},
		{"192.0.2.1:5000", []string{"203.0.113.9"}, "192.0.2.1"},                  // untrusted peer: its header is ignored
		{"10.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},                 // trusted balancer
		{"10.0.0.1:5000", []string{"203.0.113.9, 10.0.0.2"}, "203.0.113.9"},       // through two balancers
		{"10.0.0.1:5000", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"}, // right-most untrusted wins
		{"10.0.0.1:5000", []string{"garbage, 10.0.0.3"}, "10.0.0.3"},              // stops at what does not parse
		{"10.0.0.1:5000", nil, "10.0.0.1"},                                        // no header
		{"[::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},                    // IPv6
		{"[::ffff:192.0.2.1]:5000", nil, "192.0.2.1"},                             // unmapped
		{"not an address", nil, "invalid IP"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := Addr(r, trusted).String(); got != c.want {
			t.Errorf("%s %v: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	if Trusted(netip.Addr{}, trusted) {
		t.Error("the zero address is trusted")
	}
}
