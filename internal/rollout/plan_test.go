package rollout

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateAccepts(t *testing.T) {
	cases := map[string]Plan{
		"empty":   {},
		"default": DefaultPlan(),
		"canary": {Waves: []Wave{
			{Nodes: 1, Bake: 10 * time.Minute},
			{Percent: 10, Bake: time.Hour},
			{Percent: 50, Bake: MaxBake},
			{Percent: 100},
		}, Watch: MaxBake, MaxErrorPercent: 100, MinErrors: 1000000},
		"equal targets": {Waves: []Wave{{Nodes: 3}, {Nodes: 3}, {Percent: 100}}},
		"mixed":         {Waves: []Wave{{Percent: 20}, {Nodes: 2}, {Percent: 100}}},
		"tiny share":    {Waves: []Wave{{Percent: 0.01}, {Percent: 100}}, MaxErrorPercent: 0.5},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate() = %v; want nil", err)
			}
		})
	}
}

func TestValidateRefuses(t *testing.T) {
	full := Wave{Percent: 100}
	cases := []struct {
		name string
		plan Plan
		want []string // substrings that must all appear
	}{
		{"both set", Plan{Waves: []Wave{{Nodes: 1}, {Nodes: 2, Percent: 10}, full}},
			[]string{"rollout.waves[1]: set one of nodes or percent, not both"}},
		{"neither set", Plan{Waves: []Wave{{Bake: time.Minute}, full}},
			[]string{"rollout.waves[0]: set one of nodes or percent"}},
		{"percent too high", Plan{Waves: []Wave{{Percent: 150}, full}},
			[]string{"rollout.waves[0].percent: 150: want a share in (0, 100]"}},
		{"percent negative", Plan{Waves: []Wave{{Percent: -5}, full}},
			[]string{"rollout.waves[0].percent: -5: want a share in (0, 100]"}},
		{"percent NaN", Plan{Waves: []Wave{{Percent: math.NaN()}, full}},
			[]string{"rollout.waves[0].percent: NaN: want a share"}},
		{"nodes too many", Plan{Waves: []Wave{{Nodes: MaxWaveNodes + 1}, full}},
			[]string{"rollout.waves[0].nodes: 10001: want a count in [1, 10000]"}},
		{"nodes negative", Plan{Waves: []Wave{{Nodes: -1}, full}},
			[]string{"rollout.waves[0].nodes: -1: want a count"}},
		{"bake too long", Plan{Waves: []Wave{{Nodes: 1}, {Percent: 10}, {Percent: 50, Bake: 48 * time.Hour}, full}},
			[]string{"rollout.waves[2].bake: 48h0m0s exceeds the limit of 24h0m0s"}},
		{"bake negative", Plan{Waves: []Wave{{Nodes: 1, Bake: -time.Second}, full}},
			[]string{"rollout.waves[0].bake: -1s: must not be negative"}},
		{"too many waves", Plan{Waves: slices.Repeat([]Wave{full}, 11)},
			[]string{"rollout.waves: 11 waves exceed the limit of 10"}},
		{"last short of everyone", Plan{Waves: []Wave{{Nodes: 1}, {Percent: 10}, {Percent: 50}, {Percent: 90}}},
			[]string{"rollout.waves[3]: the last wave must reach percent: 100 (every node)"}},
		{"last by nodes", Plan{Waves: []Wave{{Nodes: 1}, {Nodes: 5}}},
			[]string{"rollout.waves[1]: the last wave must reach percent: 100"}},
		{"percent shrinks", Plan{Waves: []Wave{{Nodes: 1}, {Percent: 50}, {Percent: 30}, full}},
			[]string{"rollout.waves[2].percent: 30 is below the 50 of an earlier wave (targets are cumulative)"}},
		{"nodes shrink", Plan{Waves: []Wave{{Nodes: 5}, {Percent: 10}, {Nodes: 3}, full}},
			[]string{"rollout.waves[2].nodes: 3 is below the 5 of an earlier wave (targets are cumulative)"}},
		{"watch negative", Plan{Watch: -time.Minute}, []string{"rollout.watch: -1m0s: must not be negative"}},
		{"watch too long", Plan{Watch: 25 * time.Hour}, []string{"rollout.watch: 25h0m0s exceeds the limit of 24h0m0s"}},
		{"error percent high", Plan{MaxErrorPercent: 101}, []string{"rollout.max_error_percent: 101: want a share in (0, 100]"}},
		{"error percent negative", Plan{MaxErrorPercent: -1}, []string{"rollout.max_error_percent: -1"}},
		{"min errors negative", Plan{MinErrors: -1}, []string{"rollout.min_errors: -1: want a count in [1, 1000000]"}},
		{"min errors huge", Plan{MinErrors: 1000001}, []string{"rollout.min_errors: 1000001"}},
		{"all joined", Plan{Waves: []Wave{{Percent: 150}, {Nodes: 1, Bake: -1}}, Watch: -1, MinErrors: -1},
			[]string{"waves[0].percent", "waves[1].bake", "waves[1]: the last wave", "rollout.watch", "rollout.min_errors"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.plan.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil; want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	d := DefaultPlan()
	if len(d.Waves) != 1 || d.Waves[0] != (Wave{Percent: 100}) || d.Watch != DefaultWatch ||
		d.MaxErrorPercent != DefaultMaxErrorPercent || d.MinErrors != DefaultMinErrors {
		t.Fatalf("DefaultPlan() = %+v", d)
	}
	p := Plan{Waves: []Wave{{Nodes: 1}, {Percent: 100}}, Watch: time.Minute, MaxErrorPercent: 2, MinErrors: 9}
	q := p.WithDefaults()
	q.Waves[0].Nodes = 7
	if p.Waves[0].Nodes != 1 {
		t.Fatal("WithDefaults shares the Waves slice with its receiver")
	}
	if q.Watch != time.Minute || q.MaxErrorPercent != 2 || q.MinErrors != 9 {
		t.Fatalf("WithDefaults overwrote set fields: %+v", q)
	}
}
