package rollout

import (
	"strings"
	"testing"
	"time"
)

// FuzzCheck builds plans and meshes from arbitrary input and checks that nothing panics and
// that the waves always partition the members.
func FuzzCheck(f *testing.F) {
	f.Add(1, 10.0, 50.0, int64(time.Minute), "a,b,c,d,e", "c", "b1", int64(30*time.Second), uint8(0b1011))
	f.Add(0, 0.0, 0.0, int64(0), "", "", "", int64(0), uint8(0))
	f.Add(-7, -1.0, 1e308, int64(-1), "x,x,,y", "z", "\x00", int64(1)<<62, uint8(255))
	f.Fuzz(func(t *testing.T, nodes int, pct1, pct2 float64, bake int64, csv, self, bundle string, since int64, flags uint8) {
		p := Plan{
			Waves:           []Wave{{Nodes: nodes, Bake: time.Duration(bake)}, {Percent: pct1}, {Percent: pct2, Bake: time.Duration(bake)}},
			Watch:           time.Duration(bake),
			MaxErrorPercent: pct1,
			MinErrors:       nodes,
		}
		if flags&1 == 0 {
			p.Waves = p.Waves[:int(flags>>1)%len(p.Waves)]
		}
		_ = p.Validate()
		members := strings.Split(csv, ",")
		peers := make([]Peer, len(members))
		for i, m := range members {
			peers[i] = Peer{Name: m, Bundle: bundle, Healthy: flags&(1<<(i%8)) != 0, Since: time.Unix(0, since)}
		}
		g := Check(self, bundle, p, peers, time.Unix(0, bake))
		total := 0
		for _, w := range g.Waves {
			total += len(w)
		}
		if want := len(Rank(append(members, self), bundle)); total != want {
			t.Fatalf("waves hold %d members; want %d", total, want)
		}
		if g.Open != (g.Waiting == "") {
			t.Fatalf("open %v with waiting %q", g.Open, g.Waiting)
		}
		sizes := Sizes(p, len(members))
		if sizes[len(sizes)-1] != len(members) {
			t.Fatalf("Sizes = %v for %d members", sizes, len(members))
		}
		for k := 1; k < len(sizes); k++ {
			if sizes[k] < sizes[k-1] {
				t.Fatalf("Sizes not cumulative: %v", sizes)
			}
		}
		_ = Assign(members, bundle, p)
		_, _ = p.Judge(Counters{Requests: uint64(since), NodeErrors: uint64(bake), StageFailures: uint64(nodes)})
	})
}
