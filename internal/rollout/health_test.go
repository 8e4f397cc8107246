package rollout

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	cases := []struct {
		name    string
		plan    Plan
		c       Counters
		healthy bool
		reason  []string // substrings of reason when unhealthy
	}{
		{"clean", Plan{}, Counters{Requests: 1000}, true, nil},
		{"below min errors", Plan{}, Counters{Requests: 10, NodeErrors: 4}, true, nil},
		{"exactly min errors", Plan{}, Counters{Requests: 10, NodeErrors: 5}, false,
			[]string{"5 node errors and 0 stage failures in 10 requests (50.0% > 1%)"}},
		{"stage failures count", Plan{}, Counters{Requests: 100, NodeErrors: 2, StageFailures: 3}, false,
			[]string{"2 node errors and 3 stage failures in 100 requests"}},
		{"just under the percent", Plan{}, Counters{Requests: 1001, NodeErrors: 10}, true, nil},
		{"exactly the percent", Plan{}, Counters{Requests: 1000, NodeErrors: 10}, false, []string{"(1.0% >= 1%)"}},
		{"zero requests", Plan{}, Counters{NodeErrors: 5}, false, []string{"in 0 requests"}},
		{"zero requests below min", Plan{}, Counters{NodeErrors: 4}, true, nil},
		{"panics mentioned", Plan{}, Counters{Requests: 40, NodeErrors: 12, Panics: 3}, false,
			[]string{"12 node errors (3 panics) and 0 stage failures in 40 requests (30.0% > 1%)"}},
		{"one of each", Plan{MinErrors: 1, MaxErrorPercent: 50}, Counters{Requests: 1, NodeErrors: 1, Panics: 1}, false,
			[]string{"1 node error (1 panic) and 0 stage failures in 1 request (100.0% > 50%)"}},
		{"custom threshold", Plan{MaxErrorPercent: 10, MinErrors: 1}, Counters{Requests: 100, NodeErrors: 9}, true, nil},
		{"invalid plan is not lenient", Plan{MaxErrorPercent: -3, MinErrors: -2}, Counters{Requests: 10, NodeErrors: 1}, false, nil},
		{"overflow saturates", Plan{}, Counters{Requests: 10, NodeErrors: ^uint64(0), StageFailures: 2}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			healthy, reason := c.plan.Judge(c.c)
			if healthy != c.healthy {
				t.Fatalf("Judge(%+v) = %v, %q; want healthy %v", c.c, healthy, reason, c.healthy)
			}
			if healthy != (reason == "") {
				t.Fatalf("Judge(%+v) healthy %v with reason %q", c.c, healthy, reason)
			}
			for _, w := range c.reason {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q; want it to contain %q", reason, w)
				}
			}
		})
	}
}

func TestCountersSub(t *testing.T) {
	now := Counters{Requests: 100, NodeErrors: 5, Panics: 1, StageFailures: 2}
	base := Counters{Requests: 40, NodeErrors: 9, Panics: 1, StageFailures: 0}
	want := Counters{Requests: 60, NodeErrors: 0, Panics: 0, StageFailures: 2}
	if got := now.Sub(base); got != want {
		t.Fatalf("Sub = %+v; want %+v", got, want)
	}
}
