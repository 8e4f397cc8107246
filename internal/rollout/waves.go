package rollout

import (
	"bytes"
	"crypto/sha256"
	"math"
	"slices"
)

// Rank orders member names by sha256(bundle + "\x00" + name), bytes compared, ties by name.
// Duplicate and empty names are dropped. Every node that sees the same members computes the
// same order whatever order it saw them in, and a different bundle gives an unrelated order,
// so the canary is not always the same machine. members is not modified.
func Rank(members []string, bundle string) []string {
	type ranked struct {
		name string
		sum  [sha256.Size]byte
	}
	seen := make(map[string]bool, len(members))
	rs := make([]ranked, 0, len(members))
	for _, m := range members {
		if m == "" || seen[m] {
			continue
		}
		seen[m] = true
		rs = append(rs, ranked{m, sha256.Sum256([]byte(bundle + "\x00" + m))})
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if c := bytes.Compare(a.sum[:], b.sum[:]); c != 0 {
			return c
		}
		return cmpString(a.name, b.name)
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.name
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Sizes returns, for n members, the cumulative number of nodes that run the bundle after
// each wave of p.WithDefaults(): c[k] = min(n, max(c[k-1], target_k)), where target is Nodes
// or ceil(Percent*n/100), at least 1 when n > 0. The last entry is always n: the last wave
// takes everyone even if a hand-built plan says less. Invalid waves never panic; a wave
// with no usable target adds nobody.
func Sizes(p Plan, n int) []int {
	p = p.WithDefaults()
	n = max(n, 0)
	c := make([]int, len(p.Waves))
	prev := 0
	for k, w := range p.Waves {
		target := 0
		switch {
		case w.Nodes > 0:
			target = w.Nodes
		case w.Percent > 0: // false for NaN
			// Multiply first: 29*100/100 is exact where 0.29*100 is not.
			target = int(math.Ceil(min(w.Percent, 100) * float64(n) / 100))
			if n > 0 {
				target = max(target, 1)
			}
		}
		prev = min(n, max(prev, target))
		c[k] = prev
	}
	c[len(c)-1] = n
	return c
}

// Assign maps each member to its wave index (0-based) by Rank and Sizes. Waves that come out
// empty (10% of 5 nodes after a 1-node wave) simply have no members.
func Assign(members []string, bundle string, p Plan) map[string]int {
	out := make(map[string]int, len(members))
	for k, names := range split(Rank(members, bundle), p) {
		for _, name := range names {
			out[name] = k
		}
	}
	return out
}

// split cuts ranked names into the waves of p: one slice per wave, possibly empty.
func split(ranked []string, p Plan) [][]string {
	sizes := Sizes(p, len(ranked))
	waves := make([][]string, len(sizes))
	prev := 0
	for k, c := range sizes {
		waves[k] = ranked[prev:c:c]
		prev = c
	}
	return waves
}
