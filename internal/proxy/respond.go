package proxy

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/cachepolicy"
)

// serveObject answers from a complete stored object: 304 when the client's conditional
// matches, 206/416 for a Range, else the stored status, headers and body. It returns false,
// having written nothing, when the object's body is gone (evicted or purged since lookup).
func (h *Handler) serveObject(w http.ResponseWriter, r *http.Request, x *exchange, obj *cache.Object, age time.Duration, cs string) bool {
	m := obj.Meta()
	b := obj.Bytes()
	var body cache.Body
	if b == nil && r.Method != http.MethodHead && m.Size > 0 {
		// Open before anything is written: a disk object evicted or purged since the
		// lookup must become a miss, not a response cut short.
		var err error
		if body, err = obj.Open(); err != nil {
			return false
		}
		defer body.Close()
	}
	hdr := w.Header()
	for k, v := range m.Header {
		hdr[k] = v // shared, never modified: stored headers are immutable
	}
	hdr["Age"] = []string{seconds(age)}
	hdr["Cache-Status"] = []string{cs}
	x.cs = cs
	if is2xx(m.Status) && cachepolicy.NotModified(r.Method, r.Header, m.Header) {
		h.writeNotModified(w, x)
		return true
	}
	start, end, kind := int64(0), m.Size-1, cachepolicy.RangeNone
	if m.Status == http.StatusOK {
		start, end, kind = cachepolicy.ParseRange(r.Header, m.Size, m.Header)
	}
	status := m.Status
	switch kind {
	case cachepolicy.RangeUnsatisfiable:
		h.writeUnsatisfiable(w, r, x, m.Size)
		return true
	case cachepolicy.RangeOK:
		status = http.StatusPartialContent
		hdr["Content-Range"] = []string{contentRange(start, end, m.Size)}
	default:
		start, end = 0, m.Size-1
	}
	if bodyAllowed(status) {
		hdr["Content-Length"] = []string{strconv.FormatInt(end-start+1, 10)}
	}
	x.status = status
	w.WriteHeader(status)
	if r.Method == http.MethodHead || !bodyAllowed(status) || end < start {
		return true
	}
	if b != nil {
		_, _ = w.Write(b[start : end+1])
		return true
	}
	if err := copyBody(w, io.NewSectionReader(body, start, end-start+1), false); err != nil {
		h.abort(r, x, err)
	}
	return true
}

func is2xx(status int) bool { return status >= 200 && status < 300 }

// serveFill answers from an object that is still arriving from the origin.
func (h *Handler) serveFill(w http.ResponseWriter, r *http.Request, x *exchange, f *flight, cs string) {
	m := f.meta
	hdr := w.Header()
	for k, v := range m.Header {
		hdr[k] = v
	}
	age := cachepolicy.CurrentAge(&cachepolicy.Stored{Status: m.Status, Header: m.Header, RequestTime: m.RequestTime, ResponseTime: m.ResponseTime}, h.now())
	hdr["Age"] = []string{seconds(age)}
	hdr["Cache-Status"] = []string{cs}
	x.cs = cs
	if is2xx(m.Status) && cachepolicy.NotModified(r.Method, r.Header, m.Header) {
		h.writeNotModified(w, x)
		return
	}
	status := m.Status
	var start, n int64 = 0, f.length
	if f.length >= 0 && m.Status == http.StatusOK {
		s, e, kind := cachepolicy.ParseRange(r.Header, f.length, m.Header)
		switch kind {
		case cachepolicy.RangeUnsatisfiable:
			h.writeUnsatisfiable(w, r, x, f.length)
			return
		case cachepolicy.RangeOK:
			status, start, n = http.StatusPartialContent, s, e-s+1
			hdr["Content-Range"] = []string{contentRange(s, e, f.length)}
		}
	}
	if n >= 0 && bodyAllowed(status) {
		hdr["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	} else {
		delete(hdr, "Content-Length")
	}
	x.status = status
	if r.Method == http.MethodHead || !bodyAllowed(status) {
		w.WriteHeader(status)
		return
	}
	rd := f.fill.NewReader()
	defer rd.Close()
	w.WriteHeader(status)
	var src io.Reader = rd
	if start > 0 {
		if _, err := io.CopyN(io.Discard, rd, start); err != nil {
			h.abort(r, x, err)
			return
		}
	}
	if n >= 0 {
		src = io.LimitReader(rd, n)
	}
	if err := copyBody(w, src, n < 0); err != nil {
		h.abort(r, x, err)
	}
}

// writeNotModified sends a 304 keeping only the fields RFC 9110 §15.4.5 asks for (and ours).
func (h *Handler) writeNotModified(w http.ResponseWriter, x *exchange) {
	hdr := w.Header()
	_, hasETag := hdr["Etag"]
	for k := range hdr {
		switch k {
		case "Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary", "Age", "Cache-Status", "X-Request-Id", "Cdn-Cache-Control":
		case "Last-Modified":
			if hasETag {
				delete(hdr, k)
			}
		default:
			delete(hdr, k)
		}
	}
	x.status = http.StatusNotModified
	w.WriteHeader(http.StatusNotModified)
}

func (h *Handler) writeUnsatisfiable(w http.ResponseWriter, r *http.Request, x *exchange, size int64) {
	hdr := w.Header()
	for _, k := range []string{"Content-Type", "Content-Encoding", "Etag", "Last-Modified"} {
		delete(hdr, k)
	}
	hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
	hdr["Content-Length"] = []string{"0"}
	x.status = http.StatusRequestedRangeNotSatisfiable
	w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
}

func contentRange(start, end, size int64) string {
	return "bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(size, 10)
}

// bodyAllowed reports whether a response with status may carry a body (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
