package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/stages"
)

// fakeStage misbehaves as told for paths under its prefix.
type fakeStage struct {
	name, prefix string
	do           func(ctx context.Context) (stages.Verdict, error)
	calls        atomic.Int32
}

func (f *fakeStage) Name() string { return f.name }
func (f *fakeStage) Check(ctx context.Context, r *http.Request, site string) (stages.Verdict, error) {
	if !strings.HasPrefix(r.URL.Path, f.prefix) {
		return stages.Verdict{}, nil
	}
	f.calls.Add(1)
	return f.do(ctx)
}

// TestStagesKeepFailuresLocal: a stage that panics, hangs or errs on every request costs no
// client request (bypassed, counted, in the health figures); a fail-closed stage refuses
// with a 4xx, never a 5xx; a blocking verdict answers its status; a killed stage is not run.
func TestStagesKeepFailuresLocal(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	stuck := make(chan struct{})
	defer close(stuck)
	panics := &fakeStage{name: "bots", prefix: "/panic", do: func(context.Context) (stages.Verdict, error) { panic("scoring file too big") }}
	hangs := &fakeStage{name: "waf", prefix: "/hang", do: func(context.Context) (stages.Verdict, error) {
		<-stuck // ignores ctx: abandoned, not waited for
		return stages.Verdict{}, nil
	}}
	errs := &fakeStage{name: "paycrawl", prefix: "/err", do: func(context.Context) (stages.Verdict, error) { return stages.Verdict{}, errors.New("ledger down") }}
	limits := &fakeStage{name: "ratelimit", prefix: "/limited", do: func(context.Context) (stages.Verdict, error) {
		return stages.Verdict{Block: true, Status: http.StatusTooManyRequests, Reason: "rate-limited"}, nil
	}}
	var killWAF atomic.Bool
	d := stages.New([]stages.Stage{limits, hangs, panics, errs}, stages.Options{
		Logger: slog.New(slog.DiscardHandler),
		Mode: func(stage, site string) stages.Mode {
			return stages.Mode{FailClosed: stage == "paycrawl", Budget: 30 * time.Millisecond}
		},
		Killed: func(stage, site string) bool { return stage == "waf" && killWAF.Load() },
	})
	e := startWith(t, Config{Stages: d, Logger: slog.New(slog.DiscardHandler)}, origin.URL)
	get := func(path string) (int, string) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(e.proxy.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Cache-Status")
	}
	for range 20 {
		if code, _ := get("/panic"); code != 200 {
			t.Fatalf("a panicking stage cost a request: %d", code)
		}
	}
	start := time.Now()
	for range 5 {
		if code, _ := get("/hang"); code != 200 {
			t.Fatalf("a hanging stage cost a request: %d", code)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("5 requests through a hanging stage took %v (budget 30ms each)", d)
	}
	if code, cs := get("/err"); code != http.StatusForbidden || !strings.Contains(cs, "paycrawl-failed-closed") {
		t.Fatalf("fail-closed stage: %d %q", code, cs)
	}
	if code, cs := get("/limited"); code != http.StatusTooManyRequests || !strings.Contains(cs, "rate-limited") {
		t.Fatalf("blocking stage: %d %q", code, cs)
	}
	killWAF.Store(true)
	before := hangs.calls.Load()
	if code, _ := get("/hang"); code != 200 || hangs.calls.Load() != before {
		t.Fatalf("a killed stage ran: %d, calls %d -> %d", code, before, hangs.calls.Load())
	}
	st := d.Stats()
	if st["bots"].Panics != 20 || st["waf"].Timeouts != 5 || st["waf"].Bypasses != 6 || st["paycrawl"].Errors != 1 || st["ratelimit"].Blocks != 1 {
		t.Fatalf("stage counters: %+v", st)
	}
	h := e.h.Health()
	if h.StageFailures != 26 || h.NodeErrors != 0 {
		t.Fatalf("health: %+v (stage failures are not node errors; 20 panics + 5 timeouts + 1 error)", h)
	}
}
