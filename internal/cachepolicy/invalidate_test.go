package cachepolicy

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

func TestInvalidationTargets(t *testing.T) {
	target := &url.URL{Scheme: "https", Host: "example.com", Path: "/a/b", RawQuery: "x=1", Fragment: "f", User: url.User("u")}
	tests := []struct {
		name   string
		method string
		target *url.URL
		status int
		resp   http.Header
		want   []string
	}{
		{"POST 200", "POST", target, 200, hdr(), []string{"https://example.com/a/b?x=1"}},
		{"PUT 201 with Location", "PUT", target, 201, hdr("Location", "/a/c"), []string{"https://example.com/a/b?x=1", "https://example.com/a/c"}},
		{"relative Content-Location", "PATCH", target, 204, hdr("Content-Location", "c#frag"), []string{"https://example.com/a/b?x=1", "https://example.com/a/c"}},
		{"absolute same origin, case and default port", "DELETE", target, 200, hdr("Location", "HTTPS://EXAMPLE.com:443/z"), []string{"https://example.com/a/b?x=1", "https://EXAMPLE.com:443/z"}},
		{"other host not invalidated", "POST", target, 303, hdr("Location", "https://evil.example/a/b"), []string{"https://example.com/a/b?x=1"}},
		{"other scheme not invalidated", "POST", target, 303, hdr("Location", "http://example.com/a/b"), []string{"https://example.com/a/b?x=1"}},
		{"other port not invalidated", "POST", target, 303, hdr("Location", "https://example.com:8443/a/b"), []string{"https://example.com/a/b?x=1"}},
		{"duplicate dropped", "POST", target, 200, hdr("Location", "/a/b?x=1", "Content-Location", "/a/b?x=1"), []string{"https://example.com/a/b?x=1"}},
		{"unparseable Location ignored", "POST", target, 200, hdr("Location", "http://[::1"), []string{"https://example.com/a/b?x=1"}},
		{"unknown method is unsafe", "PURGE", target, 200, hdr(), []string{"https://example.com/a/b?x=1"}},
		{"GET", "GET", target, 200, hdr("Location", "/x"), nil},
		{"HEAD", "HEAD", target, 200, hdr(), nil},
		{"OPTIONS", "OPTIONS", target, 200, hdr(), nil},
		{"TRACE", "TRACE", target, 200, hdr(), nil},
		{"error status", "POST", target, 500, hdr(), nil},
		{"client error", "POST", target, 404, hdr(), nil},
		{"1xx", "POST", target, 100, hdr(), nil},
		{"relative target", "POST", &url.URL{Path: "/a"}, 200, hdr(), nil},
		{"nil target", "POST", nil, 200, hdr(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InvalidationTargets(tt.method, tt.target, tt.status, tt.resp); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("InvalidationTargets = %q, want %q", got, tt.want)
			}
		})
	}
	if target.Fragment != "f" || target.User == nil {
		t.Error("InvalidationTargets modified the target")
	}
}
