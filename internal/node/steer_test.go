package node

import (
	"net/netip"
	"testing"

	"rhizome/internal/bundle"
)

// TestSteerWeightsRegionAndLoad: answers prefer the client's region, then spread by weight
// scaled down by load; with nothing qualifying they fail open to every node.
func TestSteerWeightsRegionAndLoad(t *testing.T) {
	s := &steerer{}
	s.nodes.Store(compileDNSNodes(&bundle.DNS{
		Nodes: []bundle.DNSNode{
			{Name: "par", Addresses: []string{"192.0.2.1", "2001:db8::1"}},
			{Name: "fra", Addresses: []string{"192.0.2.2"}, Weight: 2},
			{Name: "nyc", Addresses: []string{"192.0.2.3"}},
			{Name: "busy", Addresses: []string{"192.0.2.4"}},
		},
		Regions: []bundle.DNSRegion{{Name: "eu", Prefixes: []string{"203.0.113.0/24"}}},
	}))
	ok := map[string]qualified{"par": {region: "eu"}, "fra": {region: "eu"}, "nyc": {region: "us"}, "busy": {region: "us", load: 3}}
	s.ok.Store(&ok)
	eu, us := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.9")

	counts := map[string]int{}
	for range 3000 {
		got, failOpen := s.Steer("www.example.com.", eu, 4, 1)
		if failOpen || len(got) != 1 {
			t.Fatalf("steer: %v %v", got, failOpen)
		}
		counts[got[0].String()]++
	}
	if counts["192.0.2.3"]+counts["192.0.2.4"] != 0 {
		t.Fatalf("a European client was sent out of its region: %v", counts)
	}
	if r := float64(counts["192.0.2.2"]) / float64(counts["192.0.2.1"]); r < 1.6 || r > 2.5 {
		t.Fatalf("weight 2 vs 1 gave %v", counts)
	}
	clear(counts)
	for range 3000 {
		got, _ := s.Steer("www.example.com.", us, 4, 1)
		counts[got[0].String()]++
	}
	// Outside any region: every node, by weight x load share (par 10, fra 20, nyc 10, busy 1).
	if counts["192.0.2.4"] > 200 || counts["192.0.2.3"] < 500 {
		t.Fatalf("a loaded node was not avoided: %v", counts)
	}
	if got, _ := s.Steer("www.example.com.", eu, 4, 3); len(got) != 3 {
		t.Fatalf("want 3 answers, the region's two first: %v", got)
	}
	if got, _ := s.Steer("www.example.com.", eu, 6, 2); len(got) != 1 || got[0].String() != "2001:db8::1" {
		t.Fatalf("AAAA: %v", got)
	}
	empty := map[string]qualified{}
	s.ok.Store(&empty)
	if got, failOpen := s.Steer("www.example.com.", eu, 4, 8); !failOpen || len(got) != 4 {
		t.Fatalf("fail open: %v %v", got, failOpen)
	}
}
