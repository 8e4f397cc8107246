package proxy

import (
	"io"
	"net/http"
	"strconv"
	"sync"
)

// serveUpgrade tunnels a protocol upgrade (WebSocket) to an origin: the handshake goes through
// like any request, and after a 101 the two connections are spliced until either side closes.
func (h *Handler) serveUpgrade(w http.ResponseWriter, r *http.Request, x *exchange) {
	resp, err := h.roundTrip(r.Context(), r, x, false, nil)
	if err != nil {
		h.writeError(w, r, x, err)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		h.writeUpstream(w, r, x, resp, h.name+"; fwd=bypass; fwd-status="+strconv.Itoa(resp.StatusCode))
		return
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		h.writeError(w, r, x, &Error{Status: http.StatusBadGateway, Source: SourceInternal, Detail: "upgrade-unsupported"})
		return
	}
	defer backend.Close()
	conn, brw, herr := http.NewResponseController(w).Hijack()
	if herr != nil {
		h.writeError(w, r, x, &Error{Status: http.StatusInternalServerError, Source: SourceInternal, Detail: "upgrade-unsupported", Err: herr})
		return
	}
	defer conn.Close()
	hdr := resp.Header.Clone()
	hdr.Set("Cache-Status", h.name+"; fwd=bypass; fwd-status=101")
	hdr.Set("X-Request-Id", x.rid)
	x.status, x.cs = http.StatusSwitchingProtocols, hdr.Get("Cache-Status")
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return
	}
	if err := hdr.Write(brw); err != nil {
		return
	}
	if _, err := brw.WriteString("\r\n"); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	// A copier that panics closes both ends, so that the other one (and wg.Wait) ends too.
	stop := func() { _ = conn.Close(); _ = backend.Close() }
	h.goSafe("upgrade copy", func() { // client -> origin, including anything the client sent after the handshake
		defer wg.Done()
		_, _ = io.Copy(backend, brw.Reader)
		if cw, ok := backend.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = backend.Close()
		}
	}, stop)
	h.goSafe("upgrade copy", func() { // origin -> client
		defer wg.Done()
		_, _ = io.Copy(conn, backend)
		_ = conn.Close()
	}, stop)
	wg.Wait()
}
