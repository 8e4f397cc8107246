package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestManagedRobots: the managed section comes first, then the origin's file; an origin
// with no robots.txt, or a broken one, leaves the managed section alone; HEAD gets the
// headers of the same answer; other paths and sites are untouched.
func TestManagedRobots(t *testing.T) {
	var status = http.StatusOK
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path != "/robots.txt" {
			io.WriteString(w, "page")
			return
		}
		w.WriteHeader(status)
		if status == http.StatusOK {
			io.WriteString(w, "User-agent: *\nDisallow: /admin/")
		}
	})
	e := newEnv(t, []string{o.URL})
	managed := "# BEGIN managed\nUser-agent: GPTBot\nDisallow: /\n# END\n\n"
	e.h.robots = func(site string) []byte {
		if site != "test" {
			return nil
		}
		return []byte(managed)
	}
	resp, body := e.get(t, "/robots.txt")
	if resp.StatusCode != 200 || body != managed+"User-agent: *\nDisallow: /admin/\n" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = e.do(t, http.MethodHead, "/robots.txt")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(managed)+len("User-agent: *\nDisallow: /admin/\n")) {
		t.Fatalf("HEAD: %d length %d body %q", resp.StatusCode, resp.ContentLength, body)
	}
	for _, s := range []int{http.StatusNotFound, http.StatusInternalServerError} {
		status = s
		if resp, body := e.get(t, "/robots.txt"); resp.StatusCode != 200 || body != managed {
			t.Fatalf("origin %d: %d %q", s, resp.StatusCode, body)
		}
	}
	if _, body := e.get(t, "/page"); body != "page" {
		t.Fatalf("other path: %q", body)
	}
	if _, body := e.get(t, "/robots.txt?x=1"); !strings.HasPrefix(body, "# BEGIN managed") {
		t.Fatalf("robots.txt with a query: %q", body)
	}
}
