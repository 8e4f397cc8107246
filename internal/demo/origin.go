// Package demo holds what `rhizome` needs to show itself with no setup: a built-in sample
// origin whose pages exercise the cache (fresh hits, stale-while-revalidate, Vary, private
// pages, purge tags, slow and large responses).
//
// It is sample content, never used on a real site's path.
package demo

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Origin is the sample origin's handler. Hits counts the requests it served, so that a tour
// can show how few reach it.
type Origin struct {
	Hits atomic.Int64
	mux  *http.ServeMux
}

// NewOrigin returns the sample origin.
func NewOrigin() *Origin {
	o := &Origin{mux: http.NewServeMux()}
	o.mux.HandleFunc("GET /{$}", o.index)
	o.mux.HandleFunc("GET /time", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=5, stale-while-revalidate=30, stale-if-error=600")
		fmt.Fprintf(w, "origin time %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	})
	o.mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprintf(w, "only for you, at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	})
	o.mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Vary", "Accept-Language")
		msg := "hello"
		if r.Header.Get("Accept-Language") == "fr" {
			msg = "bonjour"
		}
		fmt.Fprintln(w, msg)
	})
	o.mux.HandleFunc("GET /tagged/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Cache-Tag", "products, product-"+r.PathValue("name"))
		fmt.Fprintf(w, "product %s, rendered %s\n", r.PathValue("name"), time.Now().UTC().Format(time.RFC3339Nano))
	})
	o.mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		w.Header().Set("Cache-Control", "public, max-age=60")
		fmt.Fprintln(w, "this took the origin one second")
	})
	o.mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb < 1 || mb > 1024 {
			mb = 10
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(mb<<20))
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte('a' + i%26)
		}
		for range mb {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	return o
}

// ServeHTTP serves the sample pages.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.Hits.Add(1)
	o.mux.ServeHTTP(w, r)
}

func (o *Origin) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = io.WriteString(w, `<!doctype html><title>rhizome sample origin</title>
<h1>rhizome sample origin</h1>
<p>Requests this origin has served: `+strconv.FormatInt(o.Hits.Load(), 10)+`</p>
<ul>
<li><a href="/time">/time</a>: fresh for 5 s, then served stale while revalidating</li>
<li><a href="/hello">/hello</a>: varies on Accept-Language</li>
<li><a href="/private">/private</a>: private, never stored</li>
<li><a href="/tagged/42">/tagged/42</a>: carries Cache-Tag "products, product-42"</li>
<li><a href="/slow">/slow</a>: takes the origin a second; concurrent misses collapse</li>
<li><a href="/big?mb=100">/big?mb=100</a>: a large body, streamed</li>
</ul>
`)
}

// Serve runs the sample origin on ln until ln is closed.
func (o *Origin) Serve(ln net.Listener) error {
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}
