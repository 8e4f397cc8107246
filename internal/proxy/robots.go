package proxy

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
)

// maxRobotsBytes is what is kept of the origin's robots.txt: the size Google reads (RFC
// 9309 asks crawlers to read at least 500 KiB).
const maxRobotsBytes = 500 << 10

// serveRobots answers /robots.txt for a site whose bot policy manages it: the managed
// section (its AI preferences), then the origin's own file when the origin has one, so the
// operator's path rules still apply. The origin's file is fetched through the cache like
// any other response; when the origin has none, or fails, the managed section stands alone:
// a crawler must always be able to read the site's preferences.
func (h *Handler) serveRobots(w http.ResponseWriter, r *http.Request, x *exchange, managed []byte) {
	// A clean GET: the client's conditionals would turn the origin's file into a 304 (and
	// its rules would vanish from the answer), its Range would cut it, and its
	// Accept-Encoding would bring back compressed bytes to be appended as text.
	inner := r.Clone(r.Context())
	inner.Method = http.MethodGet
	inner.Header = http.Header{"Accept": {"text/plain"}, "Accept-Encoding": {"identity"}}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		inner.Header.Set("User-Agent", ua)
	}
	cw := &captureWriter{h: http.Header{}, limit: maxRobotsBytes}
	if h.cacheable(inner, x) {
		h.serveCached(cw, inner, x)
	} else {
		h.servePass(cw, inner, x, "fwd=bypass", "")
	}
	body := managed
	if cw.status() == http.StatusOK && isText(cw.h.Get("Content-Type")) && !encoded(cw.h) {
		body = append(append(append([]byte(nil), managed...), cw.buf.Bytes()...), '\n')
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	if cc := cw.h.Get("Cache-Control"); cc != "" && cw.status() == http.StatusOK {
		hdr.Set("Cache-Control", cc)
	} else {
		hdr.Set("Cache-Control", "max-age=300")
	}
	if cs := cw.h.Get("Cache-Status"); cs != "" {
		hdr.Set("Cache-Status", cs)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// encoded reports a body that is not plain bytes (an origin that compresses regardless).
func encoded(h http.Header) bool {
	ce := h.Get("Content-Encoding")
	return ce != "" && ce != "identity"
}

func isText(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/plain"
}

// captureWriter keeps a response in memory, up to a limit; past it the body is dropped
// (the response then counts as failed).
type captureWriter struct {
	h     http.Header
	code  int
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *captureWriter) Header() http.Header { return c.h }

func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if c.buf.Len()+len(p) > c.limit {
		c.over = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *captureWriter) status() int {
	if c.over {
		return http.StatusInsufficientStorage
	}
	return c.code
}
