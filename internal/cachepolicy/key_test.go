package cachepolicy

import (
	"net/url"
	"testing"
)

func TestCacheKey(t *testing.T) {
	tests := []struct {
		name   string
		scheme string
		host   string
		raw    string
		want   string
	}{
		{"plain", "https", "example.com", "/a?b=1", "https://example.com/a?b=1"},
		{"host lowercased, scheme lowercased", "HTTPS", "Example.COM", "/", "https://example.com/"},
		{"default https port dropped", "https", "example.com:443", "/", "https://example.com/"},
		{"default http port dropped", "http", "example.com:80", "/", "http://example.com/"},
		{"other port kept", "https", "example.com:80", "/", "https://example.com:80/"},
		{"empty port dropped", "http", "example.com:", "/", "http://example.com/"},
		{"port leading zeros", "http", "example.com:0080", "/", "http://example.com/"},
		{"host from URL when empty", "http", "", "http://Example.com:8080/x", "http://example.com:8080/x"},
		{"Host header wins over URL", "http", "a.example", "http://b.example/x", "http://a.example/x"},
		{"IPv6 canonical", "http", "[0:0::1]:80", "/", "http://[::1]/"},
		{"IPv6 with port", "https", "[2001:DB8::1]:8443", "/", "https://[2001:db8::1]:8443/"},
		{"empty path is /", "http", "h", "", "http://h/"},
		{"unreserved decoded (RFC 3986 §6.2.2.2)", "http", "h", "/%7Euser/%41%62c", "http://h/~user/Abc"},
		{"hex uppercased (§6.2.2.1)", "http", "h", "/a%2fb%c3%a9", "http://h/a%2Fb%C3%A9"},
		{"reserved escapes kept", "http", "h", "/a%2Fb%3F", "http://h/a%2Fb%3F"},
		{"dot segments and slashes kept", "http", "h", "/a/../b//c", "http://h/a/../b//c"},
		{"query order kept", "http", "h", "/?b=2&a=1", "http://h/?b=2&a=1"},
		{"query escapes normalised", "http", "h", "/?q=%7e%2b+x", "http://h/?q=~%2B+x"},
		{"query raw bytes escaped", "http", "h", "/?q=a b\"", "http://h/?q=a%20b%22"},
		{"empty query dropped", "http", "h", "/a?", "http://h/a"},
		{"fragment dropped", "http", "h", "/a#frag", "http://h/a"},
		{"stray percent escaped", "http", "h", "/?q=100%", "http://h/?q=100%25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := CacheKey(tt.scheme, tt.host, u)
			if err != nil || got != tt.want {
				t.Fatalf("CacheKey = %q, %v, want %q", got, err, tt.want)
			}
			assertStableKey(t, got)
		})
	}
	t.Run("constructed URL with odd path", func(t *testing.T) {
		got, err := CacheKey("http", "h", &url.URL{Path: "/a b?c#d", RawQuery: "x=#"})
		if want := "http://h/a%20b%3Fc%23d?x=%23"; err != nil || got != want {
			t.Errorf("CacheKey = %q, %v, want %q", got, err, want)
		}
	})
}

// TestCacheKeyRejects lists inputs that must give an error, not a key.
func TestCacheKeyRejects(t *testing.T) {
	tests := []struct {
		name   string
		scheme string
		host   string
		u      *url.URL
	}{
		{"nil URL", "http", "h", nil},
		{"ftp", "ftp", "h", &url.URL{Path: "/"}},
		{"empty scheme", "", "h", &url.URL{Path: "/"}},
		{"empty host", "http", "", &url.URL{Path: "/"}},
		{"userinfo", "http", "user@h", &url.URL{Path: "/"}},
		{"space in host", "http", "a b", &url.URL{Path: "/"}},
		{"slash in host", "http", "a/b", &url.URL{Path: "/"}},
		{"unicode host", "http", "bücher.example", &url.URL{Path: "/"}},
		{"bad port", "http", "h:http", &url.URL{Path: "/"}},
		{"port too large", "http", "h:65536", &url.URL{Path: "/"}},
		{"signed port", "http", "h:+80", &url.URL{Path: "/"}},
		{"bare IPv6", "http", "::1", &url.URL{Path: "/"}},
		{"unterminated IPv6", "http", "[::1", &url.URL{Path: "/"}},
		{"IPv4 in brackets", "http", "[1.2.3.4]", &url.URL{Path: "/"}},
		{"IPv6 zone", "http", "[fe80::1%25eth0]", &url.URL{Path: "/"}},
		{"junk after IPv6", "http", "[::1]x", &url.URL{Path: "/"}},
		{"opaque", "http", "h", &url.URL{Opaque: "x"}},
		{"relative path", "http", "h", &url.URL{Path: "a/b"}},
		{"asterisk form", "http", "h", &url.URL{Path: "*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := CacheKey(tt.scheme, tt.host, tt.u); err == nil {
				t.Errorf("CacheKey = %q, want an error", got)
			}
		})
	}
}

// assertStableKey checks that a key survives url.Parse and CacheKey unchanged.
func assertStableKey(t *testing.T, key string) {
	t.Helper()
	u, err := url.Parse(key)
	if err != nil {
		t.Fatalf("key %q does not parse: %v", key, err)
	}
	again, err := CacheKey(u.Scheme, u.Host, u)
	if err != nil || again != key {
		t.Fatalf("key %q is not stable: got %q, %v", key, again, err)
	}
}
