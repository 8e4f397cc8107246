package mesh

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states reported in [Member].State.
const (
	// StateAlive is a member answering probes.
	StateAlive = "alive"
	// StateSuspect is reserved for a member suspected of failure. memberlist
	// offers no race-free view of suspicion (its Members returns pointers
	// into a table it keeps writing), so Members does not report it today:
	// a suspect member shows as alive until it is declared dead.
	StateSuspect = "suspect"
	// StateDead is a member declared failed by the failure detector.
	StateDead = "dead"
	// StateLeft is a member that left gracefully: it was declared gone after
	// telling the mesh it was leaving (best effort; a member whose farewell
	// was missed shows as dead).
	StateLeft = "left"
)

// memberRetention is how long dead and left members stay in Members.
const memberRetention = 24 * time.Hour

// Member is one node as this node sees it. It is a plain value.
type Member struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`  // advertised host:port
	State string    `json:"state"` // alive, dead or left (see StateSuspect)
	Meta  Meta      `json:"meta"`
	Since time.Time `json:"since"` // when State last changed, by this node's clock
}

// memberEntry is one row of the member table.
type memberEntry struct {
	Member
	leaving bool // its last metadata said it was leaving gracefully
}

// setMember records n in state (StateAlive or StateDead; StateDead becomes
// StateLeft if n said it was leaving) and returns the stored Member. Called
// from memberlist's goroutines with memberlist's node lock held, so it
// copies what it needs from n and never calls memberlist.
func (m *Mesh) setMember(n *memberlist.Node, state string) Member {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Debug("mesh: malformed node meta", "node", n.Name, "err", err)
	}
	e := memberEntry{
		Member: Member{
			Name:  n.Name,
			Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
			State: state,
			Meta:  meta.Meta,
			Since: time.Now(),
		},
		leaving: meta.Leaving,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, known := m.members[n.Name]
	if state == StateDead && (e.leaving || (known && old.leaving)) {
		e.State, e.leaving = StateLeft, true
	}
	if known {
		if old.State == e.State {
			e.Since = old.Since
		}
		if old.State == StateAlive {
			m.alive--
		}
	}
	if e.State == StateAlive {
		m.alive++
	}
	m.members[n.Name] = e
	m.pruneLocked(e.Since)
	return e.Member
}

// pruneLocked drops dead and left members older than memberRetention.
// m.mu must be held.
func (m *Mesh) pruneLocked(now time.Time) {
	for name, mem := range m.members {
		if mem.State != StateAlive && now.Sub(mem.Since) > memberRetention {
			delete(m.members, name)
		}
	}
}

// numAlive returns the number of alive members (at least 1, this node), for
// the broadcast queue's retransmit limit.
func (m *Mesh) numAlive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(m.alive, 1)
}

// Members returns every member this node knows, itself included, sorted by
// name: alive ones, and dead or left ones for 24 hours after they went. Safe
// for concurrent use; the slice is the caller's.
func (m *Mesh) Members() []Member {
	m.mu.Lock()
	m.pruneLocked(time.Now())
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		out = append(out, e.Member)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}
