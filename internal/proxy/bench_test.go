package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"rhizome/internal/ratelimit"
	"rhizome/internal/stages"
)

// discardWriter is a minimal http.ResponseWriter, so that the benchmark measures the
// handler and not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHit measures the handler's own cost of a memory hit for a 1 KiB object (what the
// cache-hit benchmark against nginx spends outside net/http).
func BenchmarkHit(b *testing.B) { benchHit(b, nil) }

// BenchmarkHitStages is BenchmarkHit with the stage driver running the rate limiter (a
// per-IP rule that never blocks): the overhead of the stages on a hit. Compare the two:
// go test -run xxx -bench 'Hit' -count 5 ./internal/proxy
func BenchmarkHitStages(b *testing.B) {
	l := ratelimit.New(0)
	l.Update([]ratelimit.SiteRules{{Site: "test", Rules: []ratelimit.Rule{{Name: "all", Limit: 1_000_000, Period: time.Second}}}})
	benchHit(b, stages.New([]stages.Stage{l}, stages.Options{}))
}

func benchHit(b *testing.B, d *stages.Driver) {
	body := strings.Repeat("a", 1024)
	origin := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("ETag", `"x"`)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})
	e := newEnv(b, []string{origin.URL})
	e.h.stages = d
	resp, _ := http.Get(e.proxy.URL + "/obj")
	resp.Body.Close()
	req := httptest.NewRequest(http.MethodGet, "http://"+e.proxy.Listener.Addr().String()+"/obj", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := &discardWriter{}
	for range 100 { // until the fill is committed
		w.h = http.Header{}
		e.h.ServeHTTP(w, req)
		if strings.Contains(w.h.Get("Cache-Status"), "hit") {
			break
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.h = make(http.Header, 16)
		e.h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if !strings.Contains(w.h.Get("Cache-Status"), "hit") {
		b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
	}
}
