package stages

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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

type slowBlock struct{}

func (slowBlock) Name() string { return "waf" }
func (slowBlock) Inline() bool { return true }
func (slowBlock) Check(context.Context, *http.Request, string) (Verdict, error) {
	time.Sleep(5 * time.Millisecond)
	return Verdict{Block: true, Reason: "attack"}, nil
}

// TestLateBlockStillBlocks: an inline check that overruns its budget but decides to block
// blocks: a slow-to-match payload must not be a way past a fail-open stage.
func TestLateBlockStillBlocks(t *testing.T) {
	d := New([]Stage{slowBlock{}}, Options{Mode: func(string, string) Mode { return Mode{Budget: time.Millisecond} }})
	v, _, blocked := d.Run(httptest.NewRequest("GET", "/", nil), "s")
	if !blocked || v.Status != http.StatusForbidden || v.Reason != "attack" {
		t.Fatalf("verdict %+v blocked %v: want a 403 block", v, blocked)
	}
	if st := d.Stats()["waf"]; st.Blocks != 1 || st.Timeouts != 0 || st.Slow != 1 {
		t.Fatalf("stats %+v", st)
	}
}

type slowAllow struct{}

func (slowAllow) Name() string { return "waf" }
func (slowAllow) Inline() bool { return true }
func (slowAllow) Check(context.Context, *http.Request, string) (Verdict, error) {
	time.Sleep(5 * time.Millisecond)
	return Verdict{}, nil
}

// TestLateInlineCheckIsNotAFailure: on a saturated node every inline check runs late;
// that is counted as slow, and is neither a failure (health, rollback) nor, when failing
// closed, a refusal.
func TestLateInlineCheckIsNotAFailure(t *testing.T) {
	d := New([]Stage{slowAllow{}}, Options{Mode: func(string, string) Mode { return Mode{Budget: time.Millisecond, FailClosed: true} }})
	if v, _, blocked := d.Run(httptest.NewRequest("GET", "/", nil), "s"); blocked {
		t.Fatalf("a late allow refused the request: %+v", v)
	}
	if st := d.Stats()["waf"]; st.Slow != 1 || st.Timeouts != 0 || d.Failures() != 0 {
		t.Fatalf("stats %+v, failures %d", st, d.Failures())
	}
}

type preparer struct {
	prepared *bool
	v        Verdict
	err      error
	panics   bool
}

func (p preparer) Name() string { return "waf" }
func (p preparer) Inline() bool { return true }
func (p preparer) Prepare(*http.Request, string) (Verdict, error) {
	if p.panics {
		panic("prepare boom")
	}
	time.Sleep(3 * time.Millisecond) // outside the budget: no timeout
	*p.prepared = true
	return p.v, p.err
}
func (p preparer) Check(context.Context, *http.Request, string) (Verdict, error) {
	if !*p.prepared {
		return Verdict{}, errTimeout
	}
	return Verdict{}, nil
}

// TestPrepare: Prepare runs before Check and outside the budget; its block stops the
// request; its error or panic is a stage failure, bypassed when failing open.
func TestPrepare(t *testing.T) {
	mode := func(string, string) Mode { return Mode{Budget: time.Millisecond} }
	for _, tc := range []struct {
		name    string
		p       preparer
		blocked bool
		st      Counters
	}{
		{"ok", preparer{}, false, Counters{Runs: 1}},
		{"block", preparer{v: Verdict{Block: true, Status: 413}}, true, Counters{Runs: 1, Blocks: 1}},
		{"error", preparer{err: errOverload}, false, Counters{Runs: 1, Errors: 1, Bypasses: 1}},
		{"panic", preparer{panics: true}, false, Counters{Runs: 1, Errors: 1, Bypasses: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.prepared = new(bool)
			d := New([]Stage{tc.p}, Options{Mode: mode})
			v, _, blocked := d.Run(httptest.NewRequest("POST", "/", nil), "s")
			if blocked != tc.blocked {
				t.Fatalf("blocked %v (%+v)", blocked, v)
			}
			if st := d.Stats()["waf"]; st != tc.st {
				t.Fatalf("stats %+v, want %+v", st, tc.st)
			}
		})
	}
}

type slowPrepare struct {
	release chan struct{}
	checked *atomic.Int64
}

func (p slowPrepare) Name() string { return "waf" }
func (p slowPrepare) Inline() bool { return true }
func (p slowPrepare) Prepare(r *http.Request, _ string) (Verdict, error) {
	if r.Header.Get("Slow") != "" {
		<-p.release // a client sending its body slowly
	}
	return Verdict{}, nil
}
func (p slowPrepare) Check(context.Context, *http.Request, string) (Verdict, error) {
	p.checked.Add(1)
	return Verdict{}, nil
}

// TestSlowClientsDoNotFillTheStage: clients stalled in Prepare are not checks in flight, so
// they cannot push the stage into bypassing everyone else's requests.
func TestSlowClientsDoNotFillTheStage(t *testing.T) {
	p := slowPrepare{release: make(chan struct{}), checked: new(atomic.Int64)}
	d := New([]Stage{p}, Options{})
	var wg sync.WaitGroup
	for range MaxInFlight + 10 {
		wg.Go(func() {
			r := httptest.NewRequest("POST", "/", nil)
			r.Header.Set("Slow", "1")
			d.Run(r, "s")
		})
	}
	time.Sleep(50 * time.Millisecond)
	d.Run(httptest.NewRequest("POST", "/", nil), "s")
	if st := d.Stats()["waf"]; st.Timeouts != 0 || st.Bypasses != 0 || p.checked.Load() != 1 {
		t.Fatalf("with %d slow clients: %+v, %d checked", MaxInFlight+10, st, p.checked.Load())
	}
	close(p.release)
	wg.Wait()
}

type failing struct{ inline bool }

func (f failing) Name() string { return "bots" }
func (f failing) Inline() bool { return f.inline }
func (f failing) Check(ctx context.Context, _ *http.Request, _ string) (Verdict, error) {
	<-ctx.Done()
	return Verdict{}, ctx.Err()
}

// TestClientGoneIsNotAStageFailure: a check cut short because the client left stops the
// request (499) and counts no failure, so clients cannot make a stage look broken, nor slip
// past it by hanging up.
func TestClientGoneIsNotAStageFailure(t *testing.T) {
	for _, inline := range []bool{false, true} {
		d := New([]Stage{failing{inline}}, Options{Mode: func(string, string) Mode { return Mode{Budget: time.Second} }})
		ctx, cancel := context.WithCancel(context.Background())
		r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
		time.AfterFunc(10*time.Millisecond, cancel)
		v, _, blocked := d.Run(r, "s")
		if !blocked || v.Status != StatusClientGone {
			t.Fatalf("inline %v: %+v blocked %v", inline, v, blocked)
		}
		if d.Failures() != 0 {
			t.Fatalf("inline %v: %d failures counted for a client that left", inline, d.Failures())
		}
	}
}
