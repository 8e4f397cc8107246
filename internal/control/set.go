package control

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MaxRecords bounds a Set. Beyond it the oldest records are dropped, except the ones that
// decide a state (see pruneLocked), which stay in force however old they are.
const MaxRecords = 512

// entry is one accepted record.
type entry struct {
	signed Signed
	rec    *Record
	id     string
}

// Set is a node's control records. Safe for concurrent use.
type Set struct {
	mu      sync.Mutex
	entries map[string]entry
	// Derived from entries, kept until they change: gossip asks for the digest and the
	// driver for bundle states far more often than records arrive.
	sorted []entry
	digest string
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{entries: map[string]entry{}} }

// Add verifies s with v and adds it. It reports whether the record was new; a record
// already held is not an error.
func (c *Set) Add(v Verifier, s Signed) (*Record, bool, error) {
	r, err := v.Verify(s)
	if err != nil {
		return nil, false, err
	}
	id := s.ID()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[id]; ok {
		return r, false, nil
	}
	c.entries[id] = entry{signed: s, rec: r, id: id}
	c.sorted, c.digest = nil, ""
	c.pruneLocked()
	_, kept := c.entries[id]
	return r, kept, nil
}

// MaxReportsPerNode bounds the unhealthy reports kept from one node: a node that reports
// on every bundle, or a rogue one, cannot crowd the operators' records out of the set.
const MaxReportsPerNode = 8

// pruneLocked keeps the set within bounds. First each node's unhealthy reports beyond
// MaxReportsPerNode go, oldest first; then, beyond MaxRecords, the oldest records, except
// those that decide a state: the newest record of each kill switch and the newest operator
// record of each bundle (dropping one could lift a halt).
func (c *Set) pruneLocked() {
	defer func() { c.sorted, c.digest = nil, "" }()
	all := c.sortedLocked()
	perNode := map[string]int{}
	for i := len(all) - 1; i >= 0; i-- {
		if r := all[i].rec; r.Kind == KindUnhealthy {
			perNode[r.Node]++
			if perNode[r.Node] > MaxReportsPerNode {
				delete(c.entries, all[i].id)
			}
		}
	}
	c.sorted = nil // entries changed
	if len(c.entries) <= MaxRecords {
		return
	}
	keep := map[string]bool{}
	for _, e := range c.latestSwitchesLocked() {
		keep[e.id] = true
	}
	latestOp := map[string]string{}
	for _, e := range c.sortedLocked() {
		switch e.rec.Kind {
		case KindHalt, KindResume, KindRollback:
			latestOp[e.rec.Bundle] = e.id
		}
	}
	for _, id := range latestOp {
		keep[id] = true
	}
	for _, e := range c.sortedLocked() {
		if len(c.entries) <= MaxRecords {
			break
		}
		if !keep[e.id] {
			delete(c.entries, e.id)
		}
	}
}

// Has reports whether the set holds s.
func (c *Set) Has(s Signed) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[s.ID()]
	return ok
}

// sortedLocked returns entries oldest first (ties by id), so every node orders alike. The
// slice is shared: callers must not modify it.
func (c *Set) sortedLocked() []entry {
	if c.sorted != nil {
		return c.sorted
	}
	out := make([]entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b entry) int {
		if a.rec.At != b.rec.At {
			if a.rec.At < b.rec.At {
				return -1
			}
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	c.sorted = out
	return out
}

// Signed returns every record, oldest first, for persistence and for peers catching up.
func (c *Set) Signed() []Signed {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Signed
	for _, e := range c.sortedLocked() {
		out = append(out, e.signed)
	}
	return out
}

// Records returns the records, oldest first.
func (c *Set) Records() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Record
	for _, e := range c.sortedLocked() {
		out = append(out, *e.rec)
	}
	return out
}

// Digest is a short fingerprint of the set's ids: two nodes with the same records have the
// same digest, and one that differs tells a node to fetch the peer's records.
func (c *Set) Digest() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 || c.digest != "" {
		return c.digest
	}
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
	}
	c.digest = hex.EncodeToString(h.Sum(nil)[:8])
	return c.digest
}

// BundleState is what the records say about one bundle.
type BundleState struct {
	Halted   bool   `json:"halted,omitempty"`   // no node may start running it
	Rollback bool   `json:"rollback,omitempty"` // nodes running it go back to their last good bundle
	Reason   string `json:"reason,omitempty"`   // who stopped it and why
}

// Bundle derives the state of bundle hash: the latest operator halt, resume or rollback
// decides, except that an unhealthy report newer than the latest resume halts the bundle
// and rolls it back whatever the operator said before (one authentic report is enough).
func (c *Set) Bundle(hash string) BundleState {
	c.mu.Lock()
	defer c.mu.Unlock()
	var op *Record
	var resumeAt int64
	var bad []*Record
	for _, e := range c.sortedLocked() {
		r := e.rec
		if r.Bundle != hash {
			continue
		}
		switch r.Kind {
		case KindHalt, KindRollback, KindResume:
			op = r
			if r.Kind == KindResume {
				resumeAt = r.At
			}
		case KindUnhealthy:
			bad = append(bad, r)
		}
	}
	for i := len(bad) - 1; i >= 0; i-- {
		if r := bad[i]; r.At > resumeAt && (op == nil || op.Kind != KindRollback || r.At > op.At) {
			return BundleState{Halted: true, Rollback: true, Reason: fmt.Sprintf("node %s reported unhealthy: %s", r.Node, r.Reason)}
		}
	}
	switch {
	case op == nil || op.Kind == KindResume:
		return BundleState{}
	case op.Kind == KindRollback:
		return BundleState{Halted: true, Rollback: true, Reason: "rolled back by operator key " + op.KeyID + reasonSuffix(op)}
	default:
		return BundleState{Halted: true, Reason: "halted by operator key " + op.KeyID + reasonSuffix(op)}
	}
}

func reasonSuffix(r *Record) string {
	if r.Reason == "" {
		return ""
	}
	return ": " + r.Reason
}

// Switch is a kill switch in force.
type Switch struct {
	Stage string `json:"stage"`
	Site  string `json:"site,omitempty"` // "" for every site
	On    bool   `json:"on"`
	At    int64  `json:"at"`
	KeyID string `json:"key_id"`
}

// latestSwitchesLocked returns the newest record per (stage, site).
func (c *Set) latestSwitchesLocked() map[[2]string]entry {
	latest := map[[2]string]entry{}
	for _, e := range c.sortedLocked() {
		if e.rec.Kind == KindKillSwitch {
			latest[[2]string{e.rec.Stage, e.rec.Site}] = e
		}
	}
	return latest
}

// Switches returns the latest state of every kill switch ever set, sorted by stage and
// site; On ones bypass their stage.
func (c *Set) Switches() []Switch {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Switch
	for _, e := range c.latestSwitchesLocked() {
		out = append(out, Switch{Stage: e.rec.Stage, Site: e.rec.Site, On: e.rec.On, At: e.rec.At, KeyID: e.rec.KeyID})
	}
	slices.SortFunc(out, func(a, b Switch) int {
		if a.Stage != b.Stage {
			return strings.Compare(a.Stage, b.Stage)
		}
		return strings.Compare(a.Site, b.Site)
	})
	return out
}

// Killed reports whether stage is switched off for site: by a switch for that site, or
// failing one, by a switch for every site.
func Killed(switches []Switch, stage, site string) bool {
	all := false
	for _, s := range switches {
		if s.Stage != stage {
			continue
		}
		if s.Site == site && site != "" {
			return s.On
		}
		if s.Site == "" {
			all = s.On
		}
	}
	return all
}
