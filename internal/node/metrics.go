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
	s := n.Edge.MetricsSnapshot()
	s.Node, s.Region, s.Provider, s.Version, s.DNS, s.Members = n.boot.Name, n.boot.Region, n.boot.Provider, Version, st.DNS, st.Members
	if sg := st.Stages; sg != nil {
		s.RateLimit, s.WAF, s.Bots = sg.RateLimit, sg.WAF, sg.Bots
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
