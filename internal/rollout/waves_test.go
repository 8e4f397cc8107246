package rollout

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// canary is the plan most operators write: one node, a tenth, half, everyone.
var canary = Plan{Waves: []Wave{{Nodes: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("edge-%d", i)
	}
	return out
}

func TestRank(t *testing.T) {
	members := names(50)
	const bundle = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	want := Rank(members, bundle)
	if len(want) != 50 {
		t.Fatalf("Rank kept %d of 50 names", len(want))
	}
	t.Run("independent of input order", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			shuffled := slices.Clone(members)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := Rank(shuffled, bundle); !slices.Equal(got, want) {
				t.Fatalf("Rank of shuffled input = %v; want %v", got, want)
			}
		}
	})
	t.Run("duplicates and empty names dropped", func(t *testing.T) {
		in := append(slices.Clone(members), "", members[3], members[7], "")
		if got := Rank(in, bundle); !slices.Equal(got, want) {
			t.Fatalf("Rank with duplicates = %v; want %v", got, want)
		}
	})
	t.Run("bundle changes the canary", func(t *testing.T) {
		firsts := map[string]bool{}
		for i := range 20 {
			firsts[Rank(members, fmt.Sprintf("%064x", i))[0]] = true
		}
		if len(firsts) < 5 {
			t.Fatalf("20 bundles picked only %d distinct canaries: %v", len(firsts), firsts)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if got := Rank(nil, bundle); len(got) != 0 {
			t.Fatalf("Rank(nil) = %v", got)
		}
	})
}

func TestSizes(t *testing.T) {
	cases := []struct {
		name string
		plan Plan
		n    int
		want []int
	}{
		{"none", canary, 0, []int{0, 0, 0, 0}},
		{"one", canary, 1, []int{1, 1, 1, 1}},
		{"five", canary, 5, []int{1, 1, 3, 5}},
		{"fifty", canary, 50, []int{1, 5, 25, 50}},
		{"two hundred", canary, 200, []int{1, 20, 100, 200}},
		{"default", Plan{}, 7, []int{7}},
		{"nodes above n clamp", Plan{Waves: []Wave{{Nodes: 20}, {Nodes: 50}, {Percent: 100}}}, 10, []int{10, 10, 10}},
		{"small share rounds up", Plan{Waves: []Wave{{Percent: 0.1}, {Percent: 100}}}, 3, []int{1, 3}},
		{"short last wave takes all", Plan{Waves: []Wave{{Nodes: 1}, {Percent: 40}}}, 10, []int{1, 10}},
		{"shrinking target keeps earlier", Plan{Waves: []Wave{{Percent: 50}, {Nodes: 1}, {Percent: 100}}}, 10, []int{5, 5, 10}},
		{"negative n", canary, -3, []int{0, 0, 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sizes(c.plan, c.n); !slices.Equal(got, c.want) {
				t.Fatalf("Sizes(%d) = %v; want %v", c.n, got, c.want)
			}
		})
	}
}

func TestAssign(t *testing.T) {
	for _, n := range []int{0, 1, 5, 50, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			members := names(n)
			got := Assign(members, "b1", canary)
			if len(got) != n {
				t.Fatalf("Assign placed %d of %d members", len(got), n)
			}
			counts := make([]int, len(canary.Waves))
			for _, m := range members {
				k, ok := got[m]
				if !ok {
					t.Fatalf("%s has no wave", m)
				}
				counts[k]++
			}
			sizes, cum := Sizes(canary, n), 0
			for k := range counts {
				cum += counts[k]
				if cum != sizes[k] {
					t.Fatalf("after wave %d: %d members; Sizes says %d (counts %v)", k, cum, sizes[k], counts)
				}
			}
			rev := slices.Clone(members)
			slices.Reverse(rev)
			if again := Assign(append(rev, members...), "b1", canary); !mapsEqual(again, got) {
				t.Fatal("Assign changed with input order or duplicates")
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
