package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"rhizome/internal/snapshot"
)

// slowReader yields its data in small pieces with pauses, like a slow client upload.
type slowReader struct {
	data  []byte
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p[:min(len(p), 10)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// A client's slow upload is not the origin's first-byte time.
func TestSlowUploadIsNotAnOriginTimeout(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b[:4]))
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.Timeouts.FirstByte = 200 * time.Millisecond })
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/upload", &slowReader{data: []byte(strings.Repeat("x", 100)), pause: 60 * time.Millisecond})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "got xxxx" {
		t.Fatalf("slow upload: %d %q", resp.StatusCode, b)
	}
	if st, _ := originStatus(e, o.URL); st.Failures != 0 {
		t.Fatalf("a slow client counted against the origin: %+v", st)
	}
}

// A 5xx whose body stalls does not delay the retry that succeeds elsewhere.
func TestStalled5xxDoesNotDelayRetry(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	bad := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		<-block
	})
	good := passOrigin(t, "good", nil)
	e := newEnv(t, nil, func(s *snapshot.SiteSpec) {
		s.Pools = []snapshot.PoolSpec{
			{Name: "primary", Origins: []snapshot.OriginSpec{{URL: bad.URL}}},
			{Name: "fallback", Origins: []snapshot.OriginSpec{{URL: good.URL}}},
		}
		s.Timeouts.Idle = 2 * time.Second
	})
	start := time.Now()
	resp, body := e.get(t, "/r")
	if resp.StatusCode != 200 || body != "good" || time.Since(start) > time.Second {
		t.Fatalf("%d %q after %v", resp.StatusCode, body, time.Since(start))
	}
}

// The idle timeout bounds the origin, not a client that reads slowly.
func TestIdleTimeoutIgnoresSlowClient(t *testing.T) {
	big := strings.Repeat("z", 4<<20)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, big)
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.Timeouts.Idle = 150 * time.Millisecond })
	resp, err := http.Get(e.proxy.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	total := 0
	for i := 0; ; i++ {
		n, err := resp.Body.Read(buf)
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		if i < 3 {
			time.Sleep(400 * time.Millisecond) // a paused player
		}
	}
	if total != len(big) {
		t.Fatalf("read %d of %d bytes", total, len(big))
	}
}

// An origin that sends headers and then stalls is cut by the idle timeout and counted
// against its health.
func TestStalledBodyCountsAgainstOrigin(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "start")
		w.(http.Flusher).Flush()
		<-block
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) {
		s.Timeouts.Idle = 150 * time.Millisecond
		s.Outlier = snapshot.OutlierSpec{ConsecutiveFailures: 2}
	})
	for i := range 2 {
		resp, err := http.Get(fmt.Sprintf("%s/stall/%d", e.proxy.URL, i))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatal("a stalled body reached the client as complete")
		}
	}
	// Each stalled exchange counts once, as a failure (not a success at the headers and a
	// failure later), so two in a row eject the origin.
	eventually(t, "the origin ejected", func() bool { st, _ := originStatus(e, o.URL); return st.State == "ejected" })
	if st, _ := originStatus(e, o.URL); st.Requests != 2 || st.Failures != 2 {
		t.Fatalf("status %+v: want 2 requests, 2 failures", st)
	}
}

// Behind a trusted TLS-terminating balancer, http and https are distinct cache entries:
// the origin's redirect to https must never be served to https clients.
func TestTrustedProtoKeysTheCache(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		if r.Header.Get("X-Forwarded-Proto") != "https" {
			w.Header().Set("Location", "https://"+r.Host+r.URL.Path)
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		io.WriteString(w, "secure page")
	})
	e := newEnv(t, []string{o.URL}, func(s *snapshot.SiteSpec) { s.TrustedProxies = []string{"127.0.0.0/8"} })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fetch := func(proto string) (int, string) {
		req, _ := http.NewRequest("GET", e.proxy.URL+"/p", nil)
		req.Header.Set("X-Forwarded-Proto", proto)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	fetch("http")
	eventually(t, "the redirect stored", func() bool { code, _ := fetch("http"); return code == 301 })
	if code, body := fetch("https"); code != 200 || body != "secure page" {
		t.Fatalf("https client got %d %q: the http redirect was served from cache", code, body)
	}
}

// A client's half-close reaches the origin through a WebSocket tunnel.
func TestUpgradeHalfClose(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.ReadAll(brw) // until the client half-closes
		io.WriteString(conn, "bye\n")
	})
	e := newEnv(t, []string{o.URL})
	c, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := br.ReadString('\n')
	if line != "bye\n" {
		t.Fatalf("after half-close got %q, %v", line, err)
	}
}
