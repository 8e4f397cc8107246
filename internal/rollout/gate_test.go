package rollout

import (
	"strings"
	"testing"
	"time"
)

const bundle = "b7"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// twoWaves puts one node in wave 0 (baking 10m) and everyone else in wave 1.
var twoWaves = Plan{Waves: []Wave{{Nodes: 1, Bake: 10 * time.Minute}, {Percent: 100}}}

// mesh returns peers for members, all running bundle healthy since t0.
func mesh(members []string) []Peer {
	ps := make([]Peer, len(members))
	for i, m := range members {
		ps[i] = Peer{Name: m, Bundle: bundle, Healthy: true, Since: t0}
	}
	return ps
}

// in returns the first member that Assign puts in wave k.
func in(t *testing.T, members []string, p Plan, k int) string {
	t.Helper()
	waveOf := Assign(members, bundle, p)
	for _, m := range Rank(members, bundle) {
		if waveOf[m] == k {
			return m
		}
	}
	t.Fatalf("no member in wave %d", k)
	return ""
}

func TestCheckTwoWaves(t *testing.T) {
	members := names(5)
	canaryNode, self := in(t, members, twoWaves, 0), in(t, members, twoWaves, 1)
	edit := func(f func(*Peer)) []Peer {
		ps := mesh(members)
		for i := range ps {
			if ps[i].Name == canaryNode {
				f(&ps[i])
			}
		}
		return ps
	}
	cases := []struct {
		name    string
		self    string
		peers   []Peer
		now     time.Time
		open    bool
		waiting string
		ready   time.Time
	}{
		{"wave 0 always open", canaryNode, edit(func(p *Peer) { *p = Peer{Name: p.Name} }), t0, true, "", time.Time{}},
		{"canary not running", self, edit(func(p *Peer) { p.Bundle = "" }), t0.Add(time.Hour), false,
			"wave 0: " + canaryNode + " has not reported the bundle yet", time.Time{}},
		{"canary on another bundle", self, edit(func(p *Peer) { p.Bundle = "b6" }), t0.Add(time.Hour), false,
			"has not reported the bundle yet", time.Time{}},
		{"canary unhealthy", self, edit(func(p *Peer) { p.Healthy = false }), t0.Add(time.Hour), false,
			"wave 0: " + canaryNode + " reports unhealthy", time.Time{}},
		{"canary since unknown", self, edit(func(p *Peer) { p.Since = time.Time{} }), t0.Add(time.Hour), false,
			"since when is unknown", time.Time{}},
		{"canary baking", self, mesh(members), t0.Add(8*time.Minute + 40*time.Second), false,
			"wave 0: " + canaryNode + " baking, 1m20s left", t0.Add(10 * time.Minute)},
		{"sub-second left", self, mesh(members), t0.Add(10*time.Minute - time.Millisecond), false,
			"baking, 1ms left", t0.Add(10 * time.Minute)},
		{"opens exactly at Since+Bake", self, mesh(members), t0.Add(10 * time.Minute), true, "", t0.Add(10 * time.Minute)},
		{"open later", self, mesh(members), t0.Add(time.Hour), true, "", t0.Add(10 * time.Minute)},
		{"self missing from peers", "edge-new", mesh(members), t0.Add(time.Hour), true, "", t0.Add(10 * time.Minute)},
		{"nameless self refused", "", mesh(members), t0.Add(time.Hour), false, "no name", time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := Check(c.self, bundle, twoWaves, c.peers, c.now)
			if g.Open != c.open || !strings.Contains(g.Waiting, c.waiting) || !g.Ready.Equal(c.ready) {
				t.Fatalf("Check = open %v, waiting %q, ready %v; want %v, %q, %v", g.Open, g.Waiting, g.Ready, c.open, c.waiting, c.ready)
			}
			if g.Open != (g.Waiting == "") {
				t.Fatalf("open %v with waiting %q", g.Open, g.Waiting)
			}
			if len(g.Waves) != 2 || len(g.Waves[0]) != 1 {
				t.Fatalf("Waves = %v", g.Waves)
			}
		})
	}
	t.Run("self missing is counted", func(t *testing.T) {
		g := Check("edge-new", bundle, twoWaves, mesh(members), t0)
		if n := len(g.Waves[0]) + len(g.Waves[1]); n != 6 {
			t.Fatalf("Waves hold %d members; want 6", n)
		}
		if g.Wave != Assign(append(members, "edge-new"), bundle, twoWaves)["edge-new"] {
			t.Fatalf("Wave %d disagrees with Assign", g.Wave)
		}
	})
}

// TestCheckEmptyWave: with 5 nodes, 10% after a 1-node wave adds nobody; that wave must not
// block the 50% wave, and its (zero) bake must not replace wave 0's.
func TestCheckEmptyWave(t *testing.T) {
	p := Plan{Waves: []Wave{{Nodes: 1, Bake: time.Minute}, {Percent: 10, Bake: time.Hour}, {Percent: 50}, {Percent: 100}}}
	members := names(5)
	g := Check(in(t, members, p, 2), bundle, p, mesh(members), t0.Add(time.Minute))
	if len(g.Waves[1]) != 0 || g.Wave != 2 {
		t.Fatalf("waves %v, self in %d; want wave 1 empty, self in 2", g.Waves, g.Wave)
	}
	if !g.Open {
		t.Fatalf("gate closed by an empty wave: %q", g.Waiting)
	}
}

// TestCheckLastWave: a node in the last wave of a 200-member canary plan waits on all 100
// members of the earlier waves, each with its own wave's bake.
func TestCheckLastWave(t *testing.T) {
	p := canary
	p.Waves = append([]Wave(nil), canary.Waves...)
	for i := range p.Waves {
		p.Waves[i].Bake = time.Duration(i+1) * time.Minute
	}
	members := names(200)
	waveOf := Assign(members, bundle, p)
	self := in(t, members, p, 3)
	peers := mesh(members)
	earlier := 0
	for i := range peers {
		if waveOf[peers[i].Name] < 3 {
			earlier++
		}
	}
	if earlier != 100 {
		t.Fatalf("%d members before the last wave; want 100", earlier)
	}
	now := t0.Add(3 * time.Minute)
	if g := Check(self, bundle, p, peers, now); !g.Open || !g.Ready.Equal(now) {
		t.Fatalf("all baked: open %v, waiting %q, ready %v", g.Open, g.Waiting, g.Ready)
	}
	for i := range peers {
		if waveOf[peers[i].Name] >= 3 {
			continue
		}
		ps := mesh(members)
		ps[i].Since = now.Add(time.Second - p.Waves[waveOf[ps[i].Name]].Bake) // one member still baking, one second to go
		g := Check(self, bundle, p, ps, now)
		want := "wave " + string(rune('0'+waveOf[ps[i].Name])) + ": " + ps[i].Name + " baking, 1s left"
		if g.Open || g.Waiting != want || !g.Ready.Equal(now.Add(time.Second)) {
			t.Fatalf("open %v, waiting %q, ready %v; want closed, %q", g.Open, g.Waiting, g.Ready, want)
		}
	}
}
