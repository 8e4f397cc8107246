package stages

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"net/http"
)

type hang struct{ release chan struct{} }

func (h hang) Name() string { return "waf" }
func (h hang) Check(ctx context.Context, r *http.Request, site string) (Verdict, error) {
	<-h.release
	return Verdict{}, nil
}

// TestAbandonedChecksAreBounded: a stage that ignores its context and never returns is
// abandoned at its budget, and once MaxInFlight of its checks are stuck it is bypassed
// without starting more goroutines.
func TestAbandonedChecksAreBounded(t *testing.T) {
	h := hang{release: make(chan struct{})}
	d := New([]Stage{h}, Options{Mode: func(string, string) Mode { return Mode{Budget: 5 * time.Millisecond} }})
	var wg sync.WaitGroup
	for range MaxInFlight + 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, blocked := d.Run(httptest.NewRequest("GET", "/", nil), "s"); blocked {
				t.Error("a failing stage blocked a request (fail open)")
			}
		}()
	}
	wg.Wait()
	st := d.Stats()["waf"]
	if st.Runs > MaxInFlight || st.Timeouts != MaxInFlight+50 || st.Bypasses != MaxInFlight+50 {
		t.Fatalf("stats %+v: want at most %d runs, every request timed out and bypassed", st, MaxInFlight)
	}
	if d.Failures() != MaxInFlight+50 {
		t.Fatalf("failures %d", d.Failures())
	}
	close(h.release)
}

type inlinePanic struct{}

func (inlinePanic) Name() string { return "ratelimit" }
func (inlinePanic) Inline() bool { return true }
func (inlinePanic) Check(context.Context, *http.Request, string) (Verdict, error) {
	panic("inline boom")
}

// TestInlineStagePanicIsRecovered: a stage run on the request's goroutine is recovered and
// bypassed like any other.
func TestInlineStagePanicIsRecovered(t *testing.T) {
	d := New([]Stage{inlinePanic{}}, Options{})
	if _, _, blocked := d.Run(httptest.NewRequest("GET", "/", nil), "s"); blocked {
		t.Fatal("a panicking inline stage blocked the request")
	}
	if st := d.Stats()["ratelimit"]; st.Panics != 1 || st.Bypasses != 1 || d.Failures() != 1 {
		t.Fatalf("stats %+v", st)
	}
}
