package node

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"

	"rhizome/internal/bundle"
	"rhizome/internal/mesh"
)

// dnsNodes is the compiled DNS steering data of the active bundle: where clients reach
// each node, its weight, and which client prefixes belong to which region.
type dnsNodes struct {
	nodes   []dnsNode
	regions []dnsRegion
}

type dnsNode struct {
	name   string
	addrs  []netip.Addr
	weight int
}

type dnsRegion struct {
	name     string
	prefixes []netip.Prefix
}

// compileDNSNodes reads the bundle's dns.nodes and dns.regions (already validated).
func compileDNSNodes(d *bundle.DNS) *dnsNodes {
	out := &dnsNodes{}
	if d == nil {
		return out
	}
	for _, n := range d.Nodes {
		dn := dnsNode{name: n.Name, weight: max(n.Weight, 1)}
		for _, a := range n.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				dn.addrs = append(dn.addrs, ip.Unmap())
			}
		}
		out.nodes = append(out.nodes, dn)
	}
	for _, r := range d.Regions {
		dr := dnsRegion{name: r.Name}
		for _, p := range r.Prefixes {
			if pfx, err := netip.ParsePrefix(p); err == nil {
				dr.prefixes = append(dr.prefixes, pfx.Masked())
			} else if ip, err := netip.ParseAddr(p); err == nil {
				dr.prefixes = append(dr.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			}
		}
		out.regions = append(out.regions, dr)
	}
	return out
}

// steerer answers proxied names with the addresses of nodes that are alive in the mesh,
// healthy on their bundle and not leaving, preferring the client's region, spread by
// weight and load. It reads the membership memberlist keeps and the reports in it; it never blocks
// on the control plane beyond copying the member table.
type steerer struct {
	n     *Node
	nodes atomic.Pointer[dnsNodes]
	ok    atomic.Pointer[map[string]qualified]
}

// refreshLocked recomputes which nodes may be in answers: alive in the mesh (not dead, not
// leaving), with a signed report saying they run a bundle healthy and are not draining; this node itself when it
// runs one and is not unhealthy on it. The driver calls it every tick with n.mu held, so
// that DNS answers read a ready map and never wait for the control plane.
func (s *steerer) refreshLocked() {
	n := s.n
	ok := map[string]qualified{}
	if n.active != nil && !n.watch.unhealthy && !n.draining.Load() {
		ok[n.boot.Name] = qualified{region: n.boot.Region, load: n.loadBucket()}
	}
	if n.gossip != nil {
		for _, m := range n.gossip.mesh.Members() {
			if m.Name == n.boot.Name || m.State != mesh.StateAlive {
				continue
			}
			if rep := n.verifiedReport(m); rep != nil && rep.Healthy && !rep.Draining {
				ok[m.Name] = qualified{region: m.Meta.Region, load: rep.Load}
			}
		}
	}
	s.ok.Store(&ok)
}

// qualified is what steering knows of a node that may be in answers.
type qualified struct {
	region string
	load   uint8 // control.Report.Load
}

// loadShare scales a node's weight by its load bucket: a busy node gets fewer new clients.
var loadShare = [4]int{10, 6, 3, 1}

func (s *steerer) qualifying() map[string]qualified {
	if p := s.ok.Load(); p != nil {
		return *p
	}
	return nil
}

// Steer implements dns.Steerer.
func (s *steerer) Steer(name string, client netip.Addr, family int, limit int) ([]netip.Addr, bool) {
	d := s.nodes.Load()
	if d == nil || len(d.nodes) == 0 || limit <= 0 {
		return nil, false
	}
	ok := s.qualifying()
	region := ""
	client = client.Unmap()
	for _, r := range d.regions {
		if slices.ContainsFunc(r.prefixes, func(p netip.Prefix) bool { return p.Contains(client) }) {
			region = r.name
			break
		}
	}
	type cand struct {
		addr   netip.Addr
		weight int
		local  bool
	}
	var cands []cand
	collect := func(all bool) {
		for _, dn := range d.nodes {
			q, qualifies := ok[dn.name]
			if !all && !qualifies {
				continue
			}
			w := dn.weight * loadShare[min(int(q.load), len(loadShare)-1)]
			for _, a := range dn.addrs {
				if (family == 4) == a.Is4() {
					cands = append(cands, cand{addr: a, weight: w, local: !all && region != "" && q.region == region})
				}
			}
		}
	}
	collect(false)
	failOpen := false
	if len(cands) == 0 {
		// Never answer empty: with no node known to be good, every node is a better answer
		// than none (the client may reach one the mesh cannot).
		collect(true)
		failOpen = len(cands) > 0
	}
	// Weighted choice without replacement: nodes of the client's region first, the others
	// only to fill the answer up to the limit.
	var out []netip.Addr
	for _, local := range []bool{true, false} {
		var pool []cand
		for _, c := range cands {
			if c.local == local {
				pool = append(pool, c)
			}
		}
		for len(pool) > 0 && len(out) < limit {
			total := 0
			for _, c := range pool {
				total += c.weight
			}
			x := rand.IntN(total)
			i := 0
			for ; x >= pool[i].weight; i++ {
				x -= pool[i].weight
			}
			out = append(out, pool[i].addr)
			pool = slices.Delete(pool, i, i+1)
		}
	}
	return out, failOpen
}
