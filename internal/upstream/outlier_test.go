package upstream

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestEjectionDuration(t *testing.T) {
	tests := []struct {
		base, limit time.Duration
		previous    int
		want        time.Duration
	}{
		{5 * time.Second, 5 * time.Minute, 0, 5 * time.Second},
		{5 * time.Second, 5 * time.Minute, 1, 10 * time.Second},
		{5 * time.Second, 5 * time.Minute, 3, 40 * time.Second},
		{5 * time.Second, 5 * time.Minute, 6, 5 * time.Minute}, // 320s capped
		{5 * time.Second, 5 * time.Minute, 1000, 5 * time.Minute},
		{time.Hour, 24 * time.Hour, 80, 24 * time.Hour}, // no overflow
		{5 * time.Second, 5 * time.Second, 2, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := ejectionDuration(tt.base, tt.limit, tt.previous); got != tt.want {
			t.Errorf("ejectionDuration(%s, %s, %d) = %s, want %s", tt.base, tt.limit, tt.previous, got, tt.want)
		}
	}
}

func TestOutlierRecord(t *testing.T) {
	cfg := Outlier{ConsecutiveFailures: 3, BaseEjection: 10, MaxEjection: 25}
	type step struct {
		failed     bool
		began, now int64
		ejectUntil int64 // 0 = no ejection expected
		readmitted bool
	}
	tests := []struct {
		name  string
		cfg   Outlier
		steps []step
	}{
		{"three in a row eject", cfg, []step{
			{true, 1, 1, 0, false}, {true, 2, 2, 0, false}, {true, 3, 3, 13, false},
		}},
		{"a success resets the count", cfg, []step{
			{true, 1, 1, 0, false}, {true, 2, 2, 0, false}, {false, 3, 3, 0, false},
			{true, 4, 4, 0, false}, {true, 5, 5, 0, false}, {true, 6, 6, 16, false},
		}},
		{"failures while ejected do not extend it", cfg, []step{
			{true, 1, 1, 0, false}, {true, 1, 1, 0, false}, {true, 1, 1, 11, false},
			{true, 5, 5, 0, false}, {true, 5, 10, 0, false},
		}},
		{"probation: one failure after re-admission ejects twice as long", cfg, []step{
			{true, 0, 0, 0, false}, {true, 0, 0, 0, false}, {true, 0, 0, 10, false},
			{true, 10, 10, 30, false}, // 20
			{true, 30, 31, 56, false}, // 25: capped
			{true, 56, 57, 82, false}, // still capped
		}},
		{"straggler that began before re-admission does not eject", cfg, []step{
			{true, 0, 0, 0, false}, {true, 0, 0, 0, false}, {true, 0, 0, 10, false},
			{true, 5, 12, 0, false},
			{true, 12, 13, 33, false},
		}},
		{"success after re-admission ends the streak", cfg, []step{
			{true, 0, 0, 0, false}, {true, 0, 0, 0, false}, {true, 0, 0, 10, false},
			{false, 10, 11, 0, true},
			{true, 12, 12, 0, false}, {true, 13, 13, 0, false}, {true, 14, 14, 24, false}, // base again
		}},
		{"success while still ejected does not end the streak", cfg, []step{
			{true, 0, 0, 0, false}, {true, 0, 0, 0, false}, {true, 0, 0, 10, false},
			{false, 5, 6, 0, false},
			{true, 10, 10, 30, false},
		}},
		{"disabled", Outlier{ConsecutiveFailures: -1, BaseEjection: 10, MaxEjection: 25}, []step{
			{true, 1, 1, 0, false}, {true, 2, 2, 0, false}, {true, 3, 3, 0, false}, {true, 4, 4, 0, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s outlierState
			for i, st := range tt.steps {
				ev := s.record(st.failed, st.began, st.now, tt.cfg)
				if ev.ejected != (st.ejectUntil != 0) || (ev.ejected && ev.until != st.ejectUntil) || ev.readmitted != st.readmitted {
					t.Fatalf("step %d %+v: got %+v", i, st, ev)
				}
			}
		})
	}
}

func TestOriginEjection(t *testing.T) {
	e := newTestEnv(t)
	out := Outlier{ConsecutiveFailures: 3, BaseEjection: 10 * time.Second, MaxEjection: 30 * time.Second}
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a", "http://b")}, out)
	a := origin(t, g, "http://a")

	// Connect errors and timeouts count like failures; a cancel counts for nothing.
	a.Begin().End(ConnectError, 0)
	a.Begin().End(Canceled, 0)
	a.Begin().End(Timeout, 0)
	if !a.Available() {
		t.Fatal("ejected after 2 failures")
	}
	a.Begin().End(Failure, time.Millisecond)
	if a.Available() {
		t.Fatal("not ejected after 3 failures in a row")
	}
	for range 100 {
		if g.Pick(nil) == a {
			t.Fatal("picked an ejected origin")
		}
	}
	st := statusOf(t, e.reg, "site", "http://a")
	if st.State != StateEjected || st.EjectedUntil == nil || !st.EjectedUntil.Equal(e.clk.Now().Add(10*time.Second)) {
		t.Fatalf("status %+v, want ejected for 10s", st)
	}
	if st.ConsecutiveFailures != 3 || st.Requests != 3 || st.Failures != 3 {
		t.Fatalf("counters %+v, want 3 requests, 3 failures, 3 in a row", st)
	}

	// The ejection expires and the origin is picked again.
	e.clk.Advance(10*time.Second - 1)
	if a.Available() {
		t.Fatal("re-admitted early")
	}
	e.clk.Advance(1)
	if !a.Available() {
		t.Fatal("not re-admitted when the ejection ended")
	}
	waitPicked(t, g, a)

	// A failure right after re-admission: twice as long, then capped at 30s.
	for _, want := range []time.Duration{20 * time.Second, 30 * time.Second, 30 * time.Second} {
		a.Begin().End(Failure, time.Millisecond)
		if a.Available() {
			t.Fatal("not ejected again on probation")
		}
		e.clk.Advance(want - 1)
		if a.Available() {
			t.Fatalf("re-admitted before %s", want)
		}
		e.clk.Advance(1)
		if !a.Available() {
			t.Fatalf("not re-admitted after %s", want)
		}
	}

	// A success after re-admission ends the streak: the next ejection is the base again,
	// and needs 3 failures.
	a.Begin().End(Success, time.Millisecond)
	fail(a, 2)
	if !a.Available() {
		t.Fatal("ejected after 2 failures following a success")
	}
	fail(a, 1)
	e.clk.Advance(10 * time.Second)
	if !a.Available() {
		t.Fatal("second streak's first ejection longer than the base")
	}
	waitLog(t, e.log, `"msg":"origin ejected"`)
	waitLog(t, e.log, `"msg":"origin re-admitted"`)
	if !strings.Contains(e.log.String(), `"url":"http://a"`) {
		t.Fatalf("log lacks the url: %s", e.log)
	}
}

func waitPicked(t *testing.T, g *Group, o *Origin) {
	t.Helper()
	for range 1000 {
		if g.Pick(nil) == o {
			return
		}
	}
	t.Fatalf("%s never picked", o.URL())
}

func waitLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	waitFor(t, "log "+want, func() bool { return strings.Contains(log.String(), want) })
}

func TestAttemptEndTwice(t *testing.T) {
	e := newTestEnv(t)
	g := e.reg.Group("site", []PoolConfig{pool(t, "p", nil, "http://a")}, Outlier{})
	a := origin(t, g, "http://a")
	at := a.Begin()
	if s := statusOf(t, e.reg, "site", "http://a"); s.Inflight != 1 {
		t.Fatalf("inflight %d, want 1", s.Inflight)
	}
	at.End(Failure, time.Millisecond)
	at.End(Failure, time.Millisecond)
	if s := statusOf(t, e.reg, "site", "http://a"); s.Inflight != 0 || s.Requests != 1 {
		t.Fatalf("after double End: %+v", s)
	}
	var nilAttempt *Attempt
	nilAttempt.End(Success, 0) // must not panic
}

func TestEWMA(t *testing.T) {
	const s = int64(time.Second)
	tests := []struct {
		name      string
		v         float64
		at, now   int64
		obs       float64
		want      float64
		wantDecay float64 // ewmaDecay(v, at, now)
		tolerance float64
	}{
		{"first observation is the estimate", 0, 0, 5 * s, 100, 100, 0, 0},
		{"same instant weighs nothing", 100, 5 * s, 5 * s, 1000, 100, 100, 0},
		{"clock going back weighs nothing", 100, 5 * s, 4 * s, 1000, 100, 100, 0},
		{"one time constant", 100, 0, 10 * s, 200, 100/math.E + 200*(1-1/math.E), 100 / math.E, 1e-9},
		{"long idle: the observation", 100, 0, 1000 * s, 200, 200, 0, 1e-9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ewmaUpdate(tt.v, tt.at, tt.now, tt.obs); math.Abs(got-tt.want) > tt.tolerance {
				t.Errorf("ewmaUpdate = %v, want %v", got, tt.want)
			}
			if got := ewmaDecay(tt.v, tt.at, tt.now); math.Abs(got-tt.wantDecay) > tt.tolerance {
				t.Errorf("ewmaDecay = %v, want %v", got, tt.wantDecay)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	var w window
	slot := windowSlot
	base := 1000 * slot
	w.add(base, true)
	w.add(base+1, false)
	w.add(base+slot, false)
	w.add(base+slot, false)
	if req, fail := w.counts(base + slot); req != 4 || fail != 1 {
		t.Fatalf("counts = %d, %d; want 4, 1", req, fail)
	}
	if r := w.rate(base + slot); r != 0.25 {
		t.Fatalf("rate = %v, want 0.25", r)
	}
	// Six slots later the first bucket has left the window.
	if req, fail := w.counts(base + 6*slot); req != 2 || fail != 0 {
		t.Fatalf("counts a minute on = %d, %d; want 2, 0", req, fail)
	}
	// A slot reused by a later bucket starts from zero.
	w.add(base+6*slot, true)
	if req, fail := w.counts(base + 6*slot); req != 3 || fail != 1 {
		t.Fatalf("counts after reuse = %d, %d; want 3, 1", req, fail)
	}
	if r := w.rate(base + 100*slot); r != 0 {
		t.Fatalf("rate long after = %v, want 0", r)
	}
}

func TestRiseFall(t *testing.T) {
	tests := []struct {
		name    string
		results string // '+' pass, '-' fail
		start   bool
		want    string // state after each result: 'U' up, 'D' down
	}{
		{"fall after three", "---", true, "UUD"},
		{"a pass breaks the fall", "--+--", true, "UUUUU"},
		{"rise after two", "++", false, "DU"},
		{"a fail breaks the rise", "+-+", false, "DDD"},
		{"down, up, down", "---++---", true, "UUDDUUUD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rf riseFall
			up := tt.start
			var got strings.Builder
			for _, r := range tt.results {
				up = rf.observe(r == '+', up, 2, 3)
				if up {
					got.WriteByte('U')
				} else {
					got.WriteByte('D')
				}
			}
			if got.String() != tt.want {
				t.Fatalf("states %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{Success: "success", Failure: "failure", ConnectError: "connect_error", Timeout: "timeout", Canceled: "canceled", 9: "result(9)"} {
		if r.String() != want {
			t.Errorf("Result(%d) = %q, want %q", int(r), r.String(), want)
		}
	}
}
