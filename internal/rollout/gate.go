package rollout

import (
	"fmt"
	"time"
)

// Peer is what a node knows of one member for one bundle.
type Peer struct {
	Name    string
	Bundle  string    // hash of the bundle the member runs ("" if none)
	Healthy bool      // its last signed report said healthy
	Since   time.Time // when THIS node first saw the member run Bundle (local clock, so other machines' clocks never matter)
}

// Gate is a node's view of where a bundle's rollout stands.
type Gate struct {
	Wave    int        // this node's wave
	Open    bool       // this node may activate the bundle now
	Waiting string     // why not, for status and logs, e.g. "wave 1: edge-7 baking, 1m20s left"; "" when open
	Ready   time.Time  // when the gate opens if nothing changes; zero if unknown (an earlier member does not run the bundle or is unhealthy) or if there is nothing to wait for
	Waves   [][]string // members of each wave in rank order, len == len(plan waves)
}

// Check computes the gate for node self and bundle over the members in peers, with
// p.WithDefaults(). self is added with no bundle if it is not among peers. Members of wave 0
// are always open. A member of wave k opens when every member m of each wave j < k runs
// bundle, reports healthy, and now - m.Since >= the bake of wave j. Peers with an empty name
// are ignored; for a name listed twice the first entry counts. peers is not modified.
func Check(self, bundle string, p Plan, peers []Peer, now time.Time) Gate {
	p = p.WithDefaults()
	byName := make(map[string]Peer, len(peers)+1)
	names := make([]string, 0, len(peers)+1)
	for _, m := range peers {
		if _, dup := byName[m.Name]; !dup && m.Name != "" {
			byName[m.Name] = m
			names = append(names, m.Name)
		}
	}
	names = append(names, self) // Rank drops it if already present
	g := Gate{Waves: split(Rank(names, bundle), p)}
	if self == "" {
		// A nameless node has no rank; refusing is the only safe answer.
		g.Wave = len(g.Waves) - 1
		g.Waiting = "this node has no name, so it has no wave"
		return g
	}
	for k, ws := range g.Waves {
		for _, name := range ws {
			if name == self {
				g.Wave = k
			}
		}
	}

	// Report the first hard blocker (not running, unhealthy); failing that, the member whose
	// bake ends last, since that is what the gate waits on.
	var hard, soft string
	var ready time.Time
	known := true
	for j := 0; j < g.Wave; j++ {
		bake := max(p.Waves[j].Bake, 0)
		for _, name := range g.Waves[j] {
			m := byName[name]
			switch {
			case m.Bundle != bundle:
				known = false
				if hard == "" {
					hard = fmt.Sprintf("wave %d: %s has not reported the bundle yet", j, name)
				}
			case !m.Healthy:
				known = false
				if hard == "" {
					hard = fmt.Sprintf("wave %d: %s reports unhealthy", j, name)
				}
			case bake > 0 && m.Since.IsZero():
				// A caller that forgot Since must not skip the bake.
				known = false
				if hard == "" {
					hard = fmt.Sprintf("wave %d: %s runs the bundle but since when is unknown", j, name)
				}
			default:
				at := m.Since.Add(bake)
				if at.After(ready) {
					ready = at
					if left := at.Sub(now); left > 0 {
						soft = fmt.Sprintf("wave %d: %s baking, %v left", j, name, roundLeft(left))
					}
				}
			}
		}
	}
	if known {
		g.Ready = ready
	}
	switch {
	case hard != "":
		g.Waiting = hard
	case ready.After(now):
		g.Waiting = soft
	default:
		g.Open = true
	}
	return g
}

// roundLeft drops sub-second noise from a remaining bake for display: "1m20s", not
// "1m19.999999s". Below a second it is shown as is, so that it never reads "0s left".
func roundLeft(d time.Duration) time.Duration {
	if d < time.Second {
		return d
	}
	return d.Truncate(time.Second)
}
