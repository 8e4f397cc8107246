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

// TestManagedRobotsIgnoresClientConditionals: the client's If-None-Match, Range and
// Accept-Encoding do not reach the fetch of the origin's file, so its rules are never lost
// to a 304 or garbled by gzip.
func TestManagedRobotsIgnoresClientConditionals(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "\x1f\x8b garbage")
			return
		}
		io.WriteString(w, "User-agent: *\nDisallow: /private/")
	})
	e := newEnv(t, []string{o.URL})
	e.h.robots = func(string) []byte { return []byte("# managed\n\n") }
	for _, hdr := range [][]string{{"If-None-Match", `"v1"`}, {"Accept-Encoding", "gzip"}, {"Range", "bytes=0-3"}, {"If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"}} {
		resp, body := e.get(t, "/robots.txt", hdr...)
		if resp.StatusCode != 200 || body != "# managed\n\nUser-agent: *\nDisallow: /private/\n" {
			t.Fatalf("%v: %d %q", hdr, resp.StatusCode, body)
		}
	}
}
