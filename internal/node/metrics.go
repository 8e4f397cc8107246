package node

import (
	"rhizome/internal/metrics"
)

// Version is the release the node reports (rhizome_build_info); the CLI sets it from its
// build-time version.
var Version = "dev"

// metricsSnapshot gathers what a /metrics scrape reports, from the same counters status
// reads: nothing is counted twice and the request path pays nothing for it.
func (n *Node) metricsSnapshot() metrics.Snapshot {
	st := n.State()
	s := metrics.Snapshot{Node: n.boot.Name, Region: n.boot.Region, Provider: n.boot.Provider, Version: Version,
		Traffic: n.Edge.Proxy.Health(), Upstreams: n.Edge.Proxy.Upstreams(), DNS: st.DNS, Members: st.Members}
	if n.Edge.Store != nil {
		cs := n.Edge.Store.Stats()
		s.Cache = &cs
	}
	if sg := st.Stages; sg != nil {
		s.Stages, s.RateLimit, s.WAF, s.Bots = sg.Driver, sg.RateLimit, sg.WAF, sg.Bots
	}
	b := &s.Bundle
	if a := st.Active; a != nil {
		b.ActiveSerial, b.Activated = a.Serial, a.Activated
	}
	if p := st.Pending; p != nil {
		b.PendingSerial, b.PendingWave = p.Serial, p.Wave
	}
	b.Healthy = st.Rollout == nil || st.Rollout.Watch.Bundle == "" || st.Rollout.Watch.Healthy
	b.Refused = n.refusedTotal.Load()
	for _, sw := range st.KillSwitches {
		if sw.On {
			b.KillSwitches++
		}
	}
	b.Draining = st.Draining
	return s
}
