package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServeHTTP feeds arbitrary requests that net/http's parser accepts through the whole
// handler (cache lookup, collapsing, forwarding) against a live origin: the handler must
// never panic, and must always answer.
func FuzzServeHTTP(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x?y=1 HTTP/1.1\r\nHost: A:80\r\nRange: bytes=-5\r\nIf-None-Match: W/\"x\", *\r\n\r\n",
		"HEAD /%41 HTTP/1.1\r\nHost: a\r\nCache-Control: only-if-cached, max-stale\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET /v HTTP/1.1\r\nHost: a\r\nAccept-Language: fr\r\nAccept-Encoding: gzip;q=0, br\r\nX-Forwarded-For: garbage, 1.2.3.4\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade, x-a\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add(seed)
	}
	o := newOrigin(f, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, stale-while-revalidate=10")
		w.Header().Set("ETag", `"x"`)
		if strings.HasPrefix(r.URL.Path, "/v") {
			w.Header().Set("Vary", "Accept-Language, Accept-Encoding")
		}
		io.WriteString(w, "0123456789")
	})
	e := newEnv(f, []string{o.URL})
	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers these with 400 before the handler runs
		}
		req.RemoteAddr = "192.0.2.1:1234"
		if req.Header.Get("Upgrade") != "" {
			return // needs a hijackable connection; covered by TestWebSocketUpgrade
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("status %d for %q", w.Code, raw)
		}
		if p := e.h.Health().Panics; p != 0 { // ServeHTTP recovers panics: look for them here
			t.Fatalf("handler panicked for %q", raw)
		}
	})
}
