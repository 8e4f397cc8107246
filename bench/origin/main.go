// Command origin is the origin server used by rhizome's benchmarks and the
// benchmark peers (nginx, Varnish, HAProxy). It serves fixed, cacheable
// objects of known sizes, a slow path for miss benchmarks, a very slow path
// for request-collapsing tests, and a counter of the requests it has seen.
//
// It uses the standard library only and must stay cheap: it shares the
// benchmark machine's cores with the proxies and the load generator, so it
// holds at most a few MiB in memory (the 1 GiB object is generated on the fly).
//
// Endpoints:
//
//	/obj/1k    1 KiB, Cache-Control: public, max-age=3600, ETag, Last-Modified
//	/obj/1m    1 MiB, same headers
//	/obj/1g    1 GiB generated while it is sent, same headers, Content-Length set
//	/slow/...  waits 20 ms, then 1 KiB, cacheable (unique paths make misses)
//	/cold/...  waits 200 ms, then 1 KiB, cacheable (for the collapse test)
//	/pass/...  200, a small body, Cache-Control: no-store (every request
//	           reaches the origin; for bench/failover.sh)
//	/healthz   200 "ok", Cache-Control: no-store (for active health checks)
//	/count     JSON {"paths":{"/obj/1k":N,...},"total":N}; ?path=P limits the
//	           map to one path. /count itself is not counted.
//
// With --name N every response carries the header X-Origin: N, so that a
// client in front of a proxy with several origins sees which one answered.
//
// Objects answer conditional (If-None-Match, If-Modified-Since) and Range
// requests through http.ServeContent.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30

	cacheControl = "public, max-age=3600"
	slowDelay    = 20 * time.Millisecond  // /slow/: the origin's cost of a miss
	coldDelay    = 200 * time.Millisecond // /cold/: long enough for 1,000 requests to pile up
)

// modTime is the Last-Modified of every object: fixed, so that every run and
// every peer sees the same validators.
var modTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// pattern is the repeating content of every body: printable, not all one
// byte, so that a proxy that compresses or truncates shows it.
var pattern = func() []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
	b := make([]byte, 64*kib)
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}()

// counter counts requests per URL path. It is safe for concurrent use.
type counter struct {
	mu    sync.Mutex
	paths map[string]int
	total int
}

func (c *counter) add(path string) {
	c.mu.Lock()
	c.paths[path]++
	c.total++
	c.mu.Unlock()
}

// ServeHTTP answers /count.
func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	out := struct {
		Paths map[string]int `json:"paths"`
		Total int            `json:"total"`
	}{Paths: map[string]int{}, Total: c.total}
	if p := r.URL.Query().Get("path"); p != "" {
		out.Paths[p] = c.paths[p]
	} else {
		for k, v := range c.paths {
			out.Paths[k] = v
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		log.Printf("origin: /count: %v", err)
	}
}

// patternReader is an io.ReadSeeker over size bytes of pattern, so that a
// body of any size can be served (with Range support) without holding it.
type patternReader struct {
	off, size int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	if rest := p.size - p.off; int64(len(b)) > rest {
		b = b[:rest]
	}
	n := 0
	for n < len(b) {
		n += copy(b[n:], pattern[(p.off+int64(n))%int64(len(pattern)):])
	}
	p.off += int64(n)
	return n, nil
}

func (p *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.size
	default:
		return 0, errors.New("patternReader: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("patternReader: negative offset")
	}
	p.off = offset
	return offset, nil
}

// object serves size bytes of pattern with cacheable headers and validators.
func object(name string, size int64) http.HandlerFunc {
	var body []byte
	if size <= 4*mib {
		body = make([]byte, size)
		if _, err := io.ReadFull(&patternReader{size: size}, body); err != nil {
			panic(err)
		}
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, size)))
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", etag)
		h.Set("Content-Type", "application/octet-stream")
		var content io.ReadSeeker = &patternReader{size: size}
		if body != nil {
			content = bytes.NewReader(body)
		}
		// ServeContent sets Last-Modified, Content-Length, and answers
		// conditional and Range requests.
		http.ServeContent(w, r, name, modTime, content)
	}
}

// pass answers a small, uncacheable body: every request for it must reach an
// origin.
func pass(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "pass\n") // the client may be gone; nothing to do
}

// healthz answers 200 "ok" for active health checks.
func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok\n") // the client may be gone; nothing to do
}

// delayed waits d (or until the client goes away), then serves 1 KiB.
func delayed(d time.Duration) http.HandlerFunc {
	oneK := object("delayed", kib)
	return func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		oneK(w, r)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	name := flag.String("name", "", "if set, sent as the X-Origin header of every response")
	flag.Parse()

	c := &counter{paths: map[string]int{}}
	mux := http.NewServeMux()
	mux.Handle("/count", c)
	mux.Handle("/obj/1k", object("1k", kib))
	mux.Handle("/obj/1m", object("1m", mib))
	mux.Handle("/obj/1g", object("1g", gib))
	mux.Handle("/slow/", delayed(slowDelay))
	mux.Handle("/cold/", delayed(coldDelay))
	mux.HandleFunc("/pass/", pass)
	mux.HandleFunc("/healthz", healthz)

	srv := &http.Server{
		Addr: *listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/count" && !strings.HasPrefix(r.URL.Path, "/count/") {
				c.add(r.URL.Path)
			}
			if *name != "" {
				w.Header().Set("X-Origin", *name)
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // keep benchmark output quiet
	}
	log.Printf("origin: listening on %s (name %q)", *listen, *name)
	if err := srv.ListenAndServe(); err != nil {
		log.Fatalf("origin: %v", err)
	}
}
