package proxy

import "net/http"

// logWriter records what was sent to the client, for the access log. Unwrap lets
// http.ResponseController reach the real writer (Flush, Hijack).
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (l *logWriter) WriteHeader(code int) {
	if l.status == 0 && code >= 200 {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(p)
	l.bytes += int64(n)
	return n, err
}

func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

func (h *Handler) logAccess(r *http.Request, x *exchange, lw *logWriter) {
	status := lw.status
	if status == 0 {
		status = x.status
	}
	site := ""
	if x.site != nil {
		site = x.site.Name
	}
	h.log.Info("request",
		"request_id", x.rid, "site", site, "method", r.Method, "host", r.Host, "path", r.URL.Path,
		"status", status, "bytes", lw.bytes, "cache_status", x.cs, "duration_ms",
		float64(h.now().Sub(x.start).Microseconds())/1000, "remote", r.RemoteAddr, "proto", r.Proto)
}
