package node

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/control"
	"rhizome/internal/mesh"
	"rhizome/internal/rollout"
)

// watchState is this node's watch over its own health on the active bundle.
type watchState struct {
	hash      string
	start     time.Time
	base      rollout.Counters // the proxy's counters when the bundle became active
	done      bool             // the watch ended healthy (or nothing to watch): the bundle is good here
	unhealthy bool
	reason    string
	last      rollout.Counters // figures since activation, as of the last step
	// noPrevious: a rollback was due but there was nothing to return to (logged once).
	noPrevious bool
}

// seenRun is when this node first saw a member run a bundle.
type seenRun struct {
	hash  string
	since time.Time
}

// reportCache is a member's last verified report, so that an unchanged report is not
// verified again on every step.
type reportCache struct {
	raw string
	rep *control.Report
	err error
}

// tick is how often the driver looks at the rollout when nothing wakes it earlier.
func (n *Node) tick() time.Duration {
	if n.boot.Mesh != nil && n.boot.Mesh.FastTimers {
		return 200 * time.Millisecond
	}
	return time.Second
}

// drive runs the rollout: it opens this node's wave when the earlier ones have baked
// healthy, watches this node's own health on a new bundle, obeys halts and rollbacks, and
// keeps this node's signed report in its mesh metadata. It never blocks the data plane:
// serving reads the snapshot the driver swaps in.
func (n *Node) drive() {
	defer n.driverWG.Done()
	t := time.NewTicker(n.tick())
	defer t.Stop()
	var lastPoll, publishAt time.Time
	var pendingMeta *mesh.Meta
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		case <-n.kick:
		}
		if n.gossip != nil && time.Since(lastPoll) >= 2*n.tick() {
			lastPoll = time.Now()
			n.gossip.pollControls()
		}
		n.mu.Lock()
		n.stepLocked(time.Now())
		meta, changed, healthy := n.reportLocked()
		if n.steer != nil {
			n.steer.refreshLocked()
		}
		n.mu.Unlock()
		if changed {
			pendingMeta = &meta
			switch {
			case !healthy:
				publishAt = time.Now() // an unhealthy report goes out at once
			case publishAt.IsZero():
				publishAt = time.Now().Add(n.reportJitter())
			}
		}
		if pendingMeta != nil && n.gossip != nil && !time.Now().Before(publishAt) {
			m := *pendingMeta
			pendingMeta, publishAt = nil, time.Time{}
			if err := n.gossip.mesh.SetMeta(m, time.Second); err != nil && !errors.Is(err, mesh.ErrShutdown) {
				n.log.Warn("publishing the health report failed; will retry", "err", err)
				n.mu.Lock()
				n.lastReport = "" // publish again on the next step
				n.mu.Unlock()
			}
		}
	}
}

// reportJitter spreads metadata updates: every one is a broadcast that memberlist sends
// before any of rhizome's own, so 200 nodes publishing the moment they activate a bundle
// starved the announcements that carry it (push to active went from under 1 s to 20 s in
// the 200-node simulation). Up to 50 ms per member, at most 10 s; healthy reports gate
// later waves whose bake times are minutes.
func (n *Node) reportJitter() time.Duration {
	alive := 1
	if n.gossip != nil {
		alive = len(n.Members())
	}
	return time.Duration(rand.Int64N(int64(min(time.Duration(alive)*50*time.Millisecond, 10*time.Second)) + 1))
}

// poke wakes the driver without waiting.
func (n *Node) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) stopDriver() {
	select {
	case <-n.done:
	default:
		close(n.done)
	}
	n.driverWG.Wait()
}

// health returns the data plane's counters as rollout counters.
func (n *Node) health() rollout.Counters {
	if n.Edge == nil {
		return rollout.Counters{}
	}
	h := n.Edge.Proxy.Health()
	c := rollout.Counters{Requests: h.Requests, NodeErrors: h.NodeErrors, Panics: h.Panics, StageFailures: h.StageFailures}
	if f := n.faults.Load(); f != nil {
		c.Requests += f.Requests
		c.NodeErrors += f.NodeErrors
		c.Panics += f.Panics
		c.StageFailures += f.StageFailures
	}
	return c
}

// InjectFaults adds c to the failures the node counts, as if its data plane had had them:
// for simulations and tests of the rollout's safety net, where no real bundle can be made to
// break a node on purpose. Calls accumulate.
func (n *Node) InjectFaults(c rollout.Counters) {
	for {
		old := n.faults.Load()
		next := c
		if old != nil {
			next.Requests += old.Requests
			next.NodeErrors += old.NodeErrors
			next.Panics += old.Panics
			next.StageFailures += old.StageFailures
		}
		if n.faults.CompareAndSwap(old, &next) {
			n.poke()
			return
		}
	}
}

// stepLocked is one pass of the rollout driver. n.mu is held.
func (n *Node) stepLocked(now time.Time) {
	// An active bundle that was halted with rollback (by an operator, or by any node's
	// unhealthy report) gives way to the last good one.
	if n.active != nil {
		if st := n.controls.Bundle(n.active.Hash); st.Rollback {
			n.rollbackLocked(st.Reason, now)
		}
	}
	// This node's own health on a new bundle.
	w := &n.watch
	if n.active != nil && w.hash == n.active.Hash && !w.done && !w.unhealthy {
		w.last = n.health().Sub(w.base)
		if ok, reason := n.activePlan.Judge(w.last); !ok {
			w.unhealthy, w.reason = true, reason
			n.log.Error("this node is unhealthy on its new bundle: reporting it, which halts the bundle everywhere", "serial", n.active.Serial, "hash", n.active.Hash, "reason", reason)
			n.reportUnhealthyLocked(n.active, reason, w.last, now)
			n.rollbackLocked("this node was unhealthy on it: "+reason, now)
		} else if now.Sub(w.start) >= n.activePlan.Watch {
			w.done = true
			n.log.Info("bundle watched healthy: it is now this node's last good bundle", "serial", n.active.Serial, "figures", w.last)
		}
	}
	// The held bundle starts when this node's wave may.
	if p := n.pending; p != nil {
		if st := n.controls.Bundle(p.info.Hash); st.Halted {
			p.info.Waiting = "halted: " + st.Reason
			return
		}
		g := n.gateLocked(p, now)
		p.info.Wave, p.info.Waiting = g.Wave, g.Waiting
		if g.Open && g.Wave > 0 && now.Sub(p.confirmed) > 2*n.tick() {
			// The gate opened on what gossip says. Gossip can lose a message (a halt, a
			// canary's rollback), so ask the wave before directly first.
			p.info.Waiting = "confirming with the wave before"
			if !p.confirming && now.Sub(p.lastConfirm) >= time.Second && n.gossip != nil {
				p.confirming, p.lastConfirm = true, now
				n.gossip.confirm(p, confirmSet(g), n.membersByName())
			}
			return
		}
		if g.Open {
			p.info.Wave = g.Wave
			if err := n.activateLocked(p, now); err != nil {
				n.log.Error("activating the bundle failed; keeping the one in service", "serial", p.info.Serial, "err", err)
				p.info.Waiting = "activation failed: " + err.Error()
			}
		}
	}
}

// confirmSet returns the members a node of wave g.Wave confirms with: the first wave (the
// canaries) and the nearest earlier wave that has members (the one whose health opened the
// gate).
func confirmSet(g rollout.Gate) []string {
	var out []string
	if len(g.Waves) > 0 {
		out = append(out, g.Waves[0]...) // the canaries, whose failure matters most
	}
	for w := g.Wave - 1; w > 0; w-- {
		if w < len(g.Waves) && len(g.Waves[w]) > 0 {
			return append(out, g.Waves[w]...)
		}
	}
	return out
}

func (n *Node) membersByName() map[string]mesh.Member {
	out := map[string]mesh.Member{}
	for _, m := range n.Members() {
		out[m.Name] = m
	}
	return out
}

// confirmed records the outcome of a confirmation of p (from the gossip goroutine).
func (n *Node) confirmDone(p *candidate, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p.confirming = false
	if err != nil {
		p.info.Waiting = "confirming with the wave before: " + err.Error()
		n.log.Info("wave not confirmed yet", "serial", p.info.Serial, "err", err)
		return
	}
	p.confirmed = time.Now()
	n.poke()
}

// gateLocked computes the rollout gate of p for this node.
func (n *Node) gateLocked(p *candidate, now time.Time) rollout.Gate {
	if len(p.plan.Waves) <= 1 || n.gossip == nil {
		// One wave, or a standalone node: no one to wait for.
		return rollout.Gate{Open: true}
	}
	peers := n.peersLocked(now)
	// A node ranks itself among the members it sees. Just after a restart, or cut off from
	// most of the mesh, it sees few of them and could rank itself first: the canary of a
	// bundle the real canary may already have failed on. So it waits until it has compared
	// control records with a peer since it started, and sees at least half of the most
	// members it has seen in the last day.
	peak := n.peakLocked(len(peers), now)
	if !n.synced.Load() && (len(peers) > 1 || peak > 1) {
		return rollout.Gate{Waiting: "catching up with the mesh (control records) before taking a wave"}
	}
	if len(peers) < (peak+1)/2 {
		return rollout.Gate{Waiting: fmt.Sprintf("sees %d members of the %d seen lately: too few to rank itself among", len(peers), peak)}
	}
	return rollout.Check(n.boot.Name, p.info.Hash, p.plan, peers, now)
}

// peakFile keeps the most members a node has seen, across restarts.
const peakFile = "mesh-peak.json"

// peakLocked records alive (members seen now, the node included) and returns the most
// seen in the last 24 hours. A mesh that shrank for good (nodes retired) is believed after
// a day.
func (n *Node) peakLocked(alive int, now time.Time) int {
	path := filepath.Join(n.boot.DataDir, peakFile)
	if n.peak.Count == 0 {
		if b, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(b, &n.peak)
		}
	}
	if alive >= n.peak.Count || now.Sub(n.peak.At) > 24*time.Hour {
		changed := alive != n.peak.Count
		n.peak.Count, n.peak.At = alive, now
		if changed {
			b, _ := json.Marshal(n.peak)
			if err := writeAtomic(path, b); err != nil {
				n.log.Warn("persisting the member peak failed", "err", err)
			}
		}
	}
	return n.peak.Count
}

// memberPeak is the most members seen, and when.
type memberPeak struct {
	Count int       `json:"count"`
	At    time.Time `json:"at"`
}

// peersLocked returns what this node knows of each alive member's bundle and health,
// itself included. Reports are verified against the key each member publishes.
func (n *Node) peersLocked(now time.Time) []rollout.Peer {
	var out []rollout.Peer
	alive := map[string]bool{}
	for _, m := range n.Members() {
		if m.State != mesh.StateAlive || m.Name == n.boot.Name {
			continue
		}
		alive[m.Name] = true
		p := rollout.Peer{Name: m.Name}
		if rep := n.verifiedReport(m); rep != nil {
			p.Bundle, p.Healthy = rep.Bundle, rep.Healthy
			s := n.seen[m.Name]
			if s.hash != rep.Bundle {
				s = seenRun{hash: rep.Bundle, since: now}
				n.seen[m.Name] = s
			}
			p.Since = s.since
		}
		out = append(out, p)
	}
	for name := range n.seen {
		if !alive[name] {
			delete(n.seen, name)
		}
	}
	self := rollout.Peer{Name: n.boot.Name}
	if n.active != nil {
		self.Bundle, self.Healthy, self.Since = n.active.Hash, !n.watch.unhealthy, n.watch.start
	}
	return append(out, self)
}

// verifiedReport returns member m's report if its signature checks out.
func (n *Node) verifiedReport(m mesh.Member) *control.Report {
	raw := string(m.Meta.Report)
	if raw == "" {
		return nil
	}
	if c, ok := n.reports[m.Name]; ok && c.raw == raw {
		return c.rep
	}
	c := reportCache{raw: raw}
	pub, err := bundle.ParsePublicKey(m.Meta.Key)
	if err == nil {
		c.rep, c.err = control.VerifyReport(m.Meta.Report, m.Name, pub)
	} else {
		c.err = err
	}
	if c.err != nil {
		n.log.Warn("ignoring a member's health report", "member", m.Name, "err", c.err)
	}
	n.reports[m.Name] = c
	return c.rep
}

// reportUnhealthyLocked signs, keeps and gossips this node's unhealthy report on bundle b.
func (n *Node) reportUnhealthyLocked(b *BundleInfo, reason string, c rollout.Counters, now time.Time) {
	rec := control.Record{Kind: control.KindUnhealthy, Bundle: b.Hash, Serial: b.Serial, Node: n.boot.Name,
		Reason: reason, Counters: &c, At: now.UnixMilli()}
	s, err := control.Sign(rec, n.key)
	if err != nil {
		n.log.Error("signing the unhealthy report failed", "err", err)
		return
	}
	if _, err := n.addControlLocked(s); err != nil {
		n.log.Error("keeping the unhealthy report failed", "err", err)
	}
}

// rollbackLocked returns this node to its last good bundle (the previous one). A node with
// no good bundle to return to keeps the one it has: serving a doubtful configuration beats
// serving nothing. The bundle rolled back from is held again (halted), so that a resume can
// bring it back and a bundle with a lower serial is still refused.
func (n *Node) rollbackLocked(reason string, now time.Time) {
	from := n.active
	dir := filepath.Join(n.boot.DataDir, bundleDir)
	if n.previous == nil || n.activeFromPrevious {
		if !n.watch.noPrevious {
			n.log.Error("cannot roll back: no previous good bundle on this node; keeping the active one", "serial", from.Serial, "reason", reason)
			n.watch.noPrevious = true
		}
		return
	}
	prev, err := n.load(filepath.Join(dir, previousFile))
	if err != nil {
		n.log.Error("cannot roll back: the previous bundle does not load", "err", err)
		n.previous = nil
		return
	}
	if n.controls.Bundle(prev.info.Hash).Rollback {
		n.log.Error("cannot roll back: the previous bundle was rolled back too; keeping the active one", "serial", from.Serial)
		n.previous = nil
		return
	}
	rolled, _ := os.ReadFile(filepath.Join(dir, activeFile))
	if err := writeAtomic(filepath.Join(dir, activeFile), prev.raw); err != nil {
		n.log.Error("cannot roll back: persisting failed", "err", err)
		return
	}
	_ = os.Remove(filepath.Join(dir, previousFile))
	n.serveLocked(prev)
	info := *prev.info
	info.State, info.Activated = "active", now.UTC()
	n.active, n.activePlan, n.previous = &info, prev.plan, nil
	if n.watch.unhealthy {
		n.lastUnhealthy = fmt.Sprintf("unhealthy on serial %d (%s) at %s: %s; rolled back to serial %d",
			from.Serial, short(from.Hash), now.UTC().Format(time.RFC3339), n.watch.reason, info.Serial)
	}
	n.watch = watchState{hash: info.Hash, start: now, base: n.health(), done: true}
	if n.pending == nil || n.pending.info.Serial < from.Serial {
		if c, err := n.check(rolled); err == nil {
			c.info.State = "pending"
			if writeAtomic(filepath.Join(dir, pendingFile), rolled) == nil {
				n.pending = c
			}
		}
	}
	n.publish()
	n.log.Warn("rolled back to the last good bundle", "from_serial", from.Serial, "from_hash", from.Hash, "to_serial", info.Serial, "to_hash", info.Hash, "reason", reason)
	if n.gossip != nil {
		n.gossip.announce(*n.published.Load())
	}
}

// reportLocked returns the metadata carrying this node's current signed report, and
// whether it changed since last published.
func (n *Node) reportLocked() (meta mesh.Meta, changed, healthy bool) {
	healthy = !n.watch.unhealthy
	meta = mesh.Meta{Region: n.boot.Region, Provider: n.boot.Provider,
		Key: bundle.FormatPublicKey(n.key.Public().(ed25519.PublicKey))}
	if n.boot.Mesh != nil {
		meta.FetchURL = n.boot.Mesh.FetchURL
	}
	if n.active == nil {
		return meta, false, healthy
	}
	r := control.Report{Node: n.boot.Name, Bundle: n.active.Hash, Serial: n.active.Serial, Healthy: !n.watch.unhealthy,
		Draining: n.draining.Load(), Load: n.loadBucket()}
	// The figures change with every request, and every metadata update is a gossip
	// broadcast that all members relay: refreshing them periodically on every node saturated
	// gossip at 200 nodes (bundle announcements and halts were starved). A report goes out
	// when the node's state changes: a new bundle, unhealthy, watch over.
	key := fmt.Sprintf("%s/%t/%t/%t/%d", r.Bundle, r.Healthy, n.watch.done, r.Draining, r.Load)
	if key == n.lastReport {
		return meta, false, healthy
	}
	r.SetCounters(n.watch.last)
	r.At = time.Now().UnixMilli()
	raw, err := control.SignReport(r, n.key)
	if err != nil {
		n.log.Error("signing the health report failed", "err", err)
		return meta, false, healthy
	}
	meta.Report = raw
	n.lastReport = key
	b := []byte(raw)
	n.reportRaw.Store(&b)
	return meta, true, healthy
}

// AddControl takes a signed control record from the admin API: it is checked, kept,
// gossiped to the mesh and obeyed at once.
func (n *Node) AddControl(b []byte) (*RolloutStatus, error) {
	s, err := control.Decode(b)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.addControlLocked(s); err != nil {
		return nil, err
	}
	n.stepLocked(time.Now())
	n.poke()
	return n.rolloutLocked(time.Now()), nil
}

// addControlLocked verifies and keeps a record, persists the set and gossips the record
// if it was new. n.mu is held.
func (n *Node) addControlLocked(s control.Signed) (*control.Record, error) {
	r, isNew, err := n.controls.Add(n.verifier(true), s)
	if err != nil {
		return r, err
	}
	if !isNew {
		if !n.controls.Has(s) {
			return r, errors.New("control record not kept: the record set is full and it is older than every record in it")
		}
		return r, nil
	}
	n.log.Info("control record", "kind", r.Kind, "bundle", r.Bundle, "stage", r.Stage, "site", r.Site, "on", r.On, "node", r.Node, "key", r.KeyID, "reason", r.Reason)
	n.saveControls()
	n.publish()
	if n.gossip != nil {
		if err := n.gossip.mesh.BroadcastControl(s.Encode()); err != nil {
			n.log.Warn("gossiping a control record failed", "err", err)
		}
	}
	return r, nil
}

// verifier checks control records: operator ones with the trusted keys, node reports with
// the key the node publishes.
func (n *Node) verifier(known bool) control.Verifier {
	keys := map[string]ed25519.PublicKey{n.boot.Name: n.key.Public().(ed25519.PublicKey)}
	for _, m := range n.Members() {
		if m.Name == n.boot.Name || m.Meta.Key == "" {
			continue
		}
		if pub, err := bundle.ParsePublicKey(m.Meta.Key); err == nil {
			keys[m.Name] = pub
		}
	}
	return control.Verifier{Trust: n.boot.trust, RequireKnownNode: known, NodeKey: func(name string) (ed25519.PublicKey, bool) {
		pub, ok := keys[name]
		return pub, ok
	}}
}

// heardControl takes a record from gossip or catch-up (no lock held).
func (n *Node) heardControl(s control.Signed) { n.heardControls([]control.Signed{s}) }

// heardControls takes records from gossip or a peer's catch-up (no lock held): checked,
// kept and saved once. They are not broadcast again: gossip relays what it carries, and a
// catch-up's records are old news to the mesh.
func (n *Node) heardControls(list []control.Signed) {
	n.mu.Lock()
	added := 0
	v := n.verifier(true)
	for _, s := range list {
		r, isNew, err := n.controls.Add(v, s)
		if err != nil {
			n.log.Warn("control record refused", "err", err)
			continue
		}
		if isNew {
			added++
			n.log.Info("control record", "kind", r.Kind, "bundle", r.Bundle, "stage", r.Stage, "site", r.Site, "on", r.On, "node", r.Node, "key", r.KeyID, "reason", r.Reason)
		}
	}
	if added > 0 {
		n.saveControls()
		n.publish()
	}
	n.mu.Unlock()
	if added > 0 {
		n.poke()
	}
}

func (n *Node) loadControls() {
	b, err := os.ReadFile(filepath.Join(n.boot.DataDir, controlsFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var list []control.Signed
	if err == nil {
		err = json.Unmarshal(b, &list)
	}
	if err != nil {
		n.log.Error("control records unreadable; starting without them (peers will send theirs)", "err", err)
		return
	}
	for _, s := range list {
		// Stored records were checked when they came; their reporters may not be members
		// any more, so only signatures are checked again.
		if _, _, err := n.controls.Add(n.verifier(false), s); err != nil {
			n.log.Warn("stored control record refused", "err", err)
		}
	}
}

func (n *Node) saveControls() {
	n.switches.Store(new(n.controls.Switches()))
	b, _ := json.Marshal(n.controls.Signed())
	if err := writeAtomic(filepath.Join(n.boot.DataDir, controlsFile), b); err != nil {
		n.log.Error("persisting control records failed", "err", err)
	}
}

// loadNodeKey reads the node's key, creating it on first start (like an SSH host key).
func loadNodeKey(boot *Bootstrap) (ed25519.PrivateKey, error) {
	path := boot.Key
	if path == "" {
		path = filepath.Join(boot.DataDir, "node.key")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && boot.Key == "" {
		_, priv, err := bundle.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(path, []byte(bundle.FormatPrivateKey(priv)+"\n")); err != nil {
			return nil, fmt.Errorf("node key: %w", err)
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	k, err := bundle.ParsePrivateKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return k, nil
}

// RolloutStatus is where the newest bundle's rollout stands, as one node sees it.
type RolloutStatus struct {
	Node   string `json:"node"`
	Bundle string `json:"bundle,omitempty"` // the newest bundle this node holds or runs
	Serial uint64 `json:"serial,omitempty"`
	// State: "active" (this node runs it), "pending" (waiting for this node's wave),
	// "halted" (held, not started), "rolled back", or "none".
	State   string               `json:"state"`
	Stopped *control.BundleState `json:"stopped,omitempty"` // why the bundle is halted or rolled back
	Wave    int                  `json:"wave"`              // this node's wave for the bundle
	Waiting string               `json:"waiting,omitempty"`
	Waves   []WaveStatus         `json:"waves"`
	// Watch is this node's judgement of its own health on its active bundle.
	Watch        WatchStatus      `json:"watch"`
	KillSwitches []control.Switch `json:"kill_switches,omitempty"`
	Records      []control.Record `json:"records,omitempty"` // the newest control records
}

// WaveStatus is one wave of the plan and its members.
type WaveStatus struct {
	Target  string         `json:"target"` // "1 node", "10%"
	Bake    string         `json:"bake"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is one member's state on the bundle.
type MemberStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"` // runs the bundle
	Healthy bool   `json:"healthy"`
	For     string `json:"for,omitempty"` // how long this node has seen it run the bundle
}

// WatchStatus is the node's watch over its own health on the active bundle.
type WatchStatus struct {
	Bundle  string `json:"bundle,omitempty"`
	Healthy bool   `json:"healthy"`
	Done    bool   `json:"done"` // watched long enough: the bundle is good here
	Reason  string `json:"reason,omitempty"`
	Left    string `json:"left,omitempty"`
	// LastUnhealthy is this node's last verdict against a bundle it rolled back from.
	LastUnhealthy string           `json:"last_unhealthy,omitempty"`
	Counters      rollout.Counters `json:"counters"`
}

// Rollout reports the rollout state.
func (n *Node) Rollout() *RolloutStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rolloutLocked(time.Now())
}

func (n *Node) rolloutLocked(now time.Time) *RolloutStatus {
	st := &RolloutStatus{Node: n.boot.Name, State: "none", KillSwitches: n.controls.Switches()}
	w := n.watch
	st.Watch = WatchStatus{Bundle: w.hash, Healthy: !w.unhealthy, Done: w.done, Counters: w.last, LastUnhealthy: n.lastUnhealthy}
	if w.unhealthy {
		st.Watch.Reason = w.reason
	}
	if !w.done && !w.unhealthy && n.active != nil {
		st.Watch.Left = (n.activePlan.Watch - now.Sub(w.start)).Round(time.Second).String()
	}
	recs := n.controls.Records()
	if len(recs) > 20 {
		recs = recs[len(recs)-20:]
	}
	st.Records = recs
	var plan rollout.Plan
	switch {
	case n.pending != nil:
		p := n.pending
		st.Bundle, st.Serial, st.State, plan = p.info.Hash, p.info.Serial, "pending", p.plan
		st.Wave, st.Waiting = p.info.Wave, p.info.Waiting
	case n.active != nil:
		st.Bundle, st.Serial, st.State, plan = n.active.Hash, n.active.Serial, "active", n.activePlan
		st.Wave = n.active.Wave
	default:
		return st
	}
	if bs := n.controls.Bundle(st.Bundle); bs.Halted {
		bsc := bs
		st.Stopped = &bsc
		switch {
		case bs.Rollback:
			st.State = "rolled back"
		case st.State == "active":
			st.State = "active, rollout halted"
		default:
			st.State = "halted"
		}
	}
	peers := []rollout.Peer{{Name: n.boot.Name}}
	if n.gossip != nil {
		peers = n.peersLocked(now)
	} else if n.active != nil {
		peers[0] = rollout.Peer{Name: n.boot.Name, Bundle: n.active.Hash, Healthy: !w.unhealthy, Since: w.start}
	}
	byName := map[string]rollout.Peer{}
	for _, p := range peers {
		byName[p.Name] = p
	}
	g := rollout.Check(n.boot.Name, st.Bundle, plan, peers, now)
	for i, wave := range plan.Waves {
		ws := WaveStatus{Bake: wave.Bake.String()}
		if wave.Nodes > 0 {
			ws.Target = fmt.Sprintf("%d node(s)", wave.Nodes)
		} else {
			ws.Target = fmt.Sprintf("%g%%", wave.Percent)
		}
		if i < len(g.Waves) {
			for _, name := range g.Waves[i] {
				p := byName[name]
				ms := MemberStatus{Name: name, Running: p.Bundle == st.Bundle, Healthy: p.Healthy}
				if ms.Running && !p.Since.IsZero() {
					ms.For = now.Sub(p.Since).Round(time.Second).String()
				}
				ws.Members = append(ws.Members, ms)
			}
		}
		st.Waves = append(st.Waves, ws)
	}
	return st
}

// drainFile marks a draining node, across restarts.
const drainFile = "draining"

// SetDraining takes the node out of DNS answers (on) or puts it back (off). The node keeps
// serving whoever still comes: resolvers hold answers for their TTL. The state is
// persisted and published in the node's signed report.
func (n *Node) SetDraining(on bool) error {
	path := filepath.Join(n.boot.DataDir, drainFile)
	var err error
	if on {
		err = writeAtomic(path, []byte("draining\n"))
	} else if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	n.draining.Store(on)
	n.log.Info("draining", "on", on)
	n.poke()
	return nil
}

// loadBucket is this node's CPU load (the 1-minute load average per core, where the
// system reports one) as control.Report.Load.
func (n *Node) loadBucket() uint8 {
	if f := n.loadOverride.Load(); f != nil {
		return *f
	}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l1 float64
	if _, err := fmt.Sscanf(string(b), "%f", &l1); err != nil {
		return 0
	}
	per := l1 / float64(runtime.NumCPU())
	switch {
	case per < 0.7:
		return 0
	case per < 1.0:
		return 1
	case per < 1.5:
		return 2
	}
	return 3
}
