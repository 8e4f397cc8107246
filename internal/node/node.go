package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rhizome/internal/admin"
	"rhizome/internal/bots"
	"rhizome/internal/bundle"
	"rhizome/internal/control"
	"rhizome/internal/dns"
	"rhizome/internal/edge"
	"rhizome/internal/mesh"
	"rhizome/internal/metrics"
	"rhizome/internal/proxy"
	"rhizome/internal/ratelimit"
	"rhizome/internal/rollout"
	"rhizome/internal/snapshot"
	"rhizome/internal/stages"
	"rhizome/internal/upstream"
	"rhizome/internal/waf"
)

// Files in DataDir/bundles. The active bundle is the last-known-good: a node restarted with
// no peers and no network serves from it.
const (
	bundleDir    = "bundles"
	activeFile   = "active.bundle"
	previousFile = "previous.bundle"
	pendingFile  = "pending.bundle" // verified, waiting for its rollout wave (or halted)
	controlsFile = "controls.json"  // signed control records: halts, kill switches, reports
	maxRefusals  = 20
)

// BundleInfo describes a bundle a node runs or ran.
type BundleInfo struct {
	Serial    uint64    `json:"serial"`
	Hash      string    `json:"hash"`
	Parent    string    `json:"parent,omitempty"`
	Created   time.Time `json:"created"`
	Signers   []string  `json:"signers"`
	Activated time.Time `json:"activated,omitzero"`
	Sites     int       `json:"sites"`
	// State is "active" or "pending" (held until the node's rollout wave may start).
	State string `json:"state,omitempty"`
	// Wave and Waiting say where a pending bundle stands: the node's wave and what it waits for.
	Wave    int    `json:"wave"`
	Waiting string `json:"waiting,omitempty"`
}

// Refusal is a bundle the node would not run, and why.
type Refusal struct {
	Time   time.Time `json:"time"`
	Serial uint64    `json:"serial,omitempty"`
	Hash   string    `json:"hash,omitempty"`
	Reason string    `json:"reason"`
}

// State is the node's bundle state for `rhizome status`.
type State struct {
	Node     string      `json:"node"`
	Region   string      `json:"region,omitempty"`
	Provider string      `json:"provider,omitempty"`
	Active   *BundleInfo `json:"active"`
	Previous *BundleInfo `json:"previous,omitempty"`
	Pending  *BundleInfo `json:"pending,omitempty"`
	// Draining: the operator took the node out of DNS answers (rhizome drain).
	Draining bool `json:"draining,omitempty"`
	// DNS counts what the node's nameserver did (nil without DNS); FailOpen counts the
	// answers that listed every node because none qualified.
	DNS *dns.Stats `json:"dns,omitempty"`
	// Rollout is where the newest bundle's rollout stands, as this node sees it.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// KillSwitches are the stage kill switches set on the mesh.
	KillSwitches []control.Switch `json:"kill_switches,omitempty"`
	Refused      []Refusal        `json:"refused,omitempty"`
	Trust        TrustSummary     `json:"trust"`
	Members      []mesh.Member    `json:"members,omitempty"`
	// Peers is what each member's signed report says: the bundle it runs and its health.
	Peers []PeerState `json:"peers,omitempty"`
	// Stages counts what the request stages did since the node started.
	Stages *StageState `json:"stages,omitempty"`
}

// StageState is the request stages' figures: the driver's per stage (runs, blocks,
// failures, bypasses), then each stage's own.
type StageState struct {
	Driver    map[string]stages.Counters  `json:"driver"`
	RateLimit ratelimit.Stats             `json:"ratelimit"`
	WAF       waf.Stats                   `json:"waf"`
	Bots      map[string]bots.ClassCounts `json:"bots,omitempty"` // by class: crawler categories, automated, human, spoofed
}

// PeerState is one member's bundle and health, from its signed report.
type PeerState struct {
	Name     string `json:"name"`
	Serial   uint64 `json:"serial,omitempty"`
	Bundle   string `json:"bundle,omitempty"`
	Healthy  bool   `json:"healthy"`
	Draining bool   `json:"draining,omitempty"`
	// Figures since it activated the bundle: requests, node errors, panics, stage failures.
	Figures [4]uint64 `json:"figures"`
	Error   string    `json:"error,omitempty"` // why its report was not believed
}

// TrustSummary is the node's trust configuration, by key id.
type TrustSummary struct {
	Keys     []string `json:"keys"`
	Required int      `json:"required"`
}

// Node is a running mesh node.
type Node struct {
	boot *Bootstrap
	log  *slog.Logger
	Edge *edge.Node

	gossip    *gossip     // nil for a standalone node
	dns       *dns.Server // nil unless the bootstrap names a dns address
	steer     *steerer
	published atomic.Pointer[mesh.Announcement] // what this node runs, for the mesh; read without n.mu

	refusedTotal atomic.Uint64 // bundles refused since start (the list keeps the last few)

	stopOnce sync.Once
	stopErr  error

	key      ed25519.PrivateKey // signs this node's health reports
	faults   atomic.Pointer[rollout.Counters]
	held     atomic.Uint64 // the highest serial the node runs or holds (halted included)
	synced   atomic.Bool   // compared control records with a peer since start
	draining atomic.Bool   // out of DNS answers by the operator's choice
	// loadOverride replaces the measured load bucket (tests: every process on one machine
	// shares one load average).
	loadOverride atomic.Pointer[uint8]
	// switches is the kill switches in force, read by the stage driver on every request.
	switches atomic.Pointer[[]control.Switch]
	limiter  *ratelimit.Limiter
	waf      *waf.Stage
	bots     *bots.Stage
	driver   *stages.Driver
	// stageModes is the active bundle's stage modes by site + "\x00" + stage.
	stageModes atomic.Pointer[map[string]stages.Mode]
	controls   *control.Set
	kick       chan struct{} // wakes the rollout driver
	done       chan struct{} // closed when the node stops
	driverWG   sync.WaitGroup

	mu                 sync.Mutex // serialises Apply and the rollout driver
	active             *BundleInfo
	activePlan         rollout.Plan
	activeBody         *bundle.Body // the active bundle's content (its DNS section)
	activeSec          *security    // the active bundle's compiled stage settings
	activeFromPrevious bool         // loaded from previous.bundle at start (active.bundle was unusable)
	previous           *BundleInfo
	pending            *candidate
	watch              watchState
	refused            []Refusal
	seen               map[string]seenRun     // member -> the bundle it runs and since when (this node's clock)
	reports            map[string]reportCache // member -> its last verified report
	lastReport         string                 // the report last put in this node's metadata (its body)
	peak               memberPeak
	lastUnhealthy      string                 // this node's last verdict against a bundle, for status
	reportRaw          atomic.Pointer[[]byte] // that signed report, served to peers confirming a wave
}

// Start opens the data dir, loads the last-known-good bundle (falling back to the previous
// one, then to no sites, logging why), and starts serving. A bundle that was waiting for its
// rollout wave is held again, and the control records (halts, kill switches) are reloaded.
func Start(boot *Bootstrap, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	n := &Node{boot: boot, log: log.With("node", boot.Name), controls: control.NewSet(),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		seen: map[string]seenRun{}, reports: map[string]reportCache{}}
	if err := os.MkdirAll(filepath.Join(boot.DataDir, bundleDir), 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	key, err := loadNodeKey(boot)
	if err != nil {
		return nil, err
	}
	n.key = key
	n.loadControls()
	if _, err := os.Stat(filepath.Join(boot.DataDir, drainFile)); err == nil {
		n.draining.Store(true)
		n.log.Warn("this node is draining (rhizome drain off puts it back in DNS answers)")
	}
	snap := snapshot.Empty("none")
	for _, f := range []string{activeFile, previousFile} {
		c, err := n.load(filepath.Join(boot.DataDir, bundleDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			n.log.Error("stored bundle refused at start", "file", f, "err", err)
			n.refuse(nil, err)
			continue
		}
		snap, n.active, n.activePlan, n.activeBody, n.activeSec = c.snap, c.info, c.plan, c.body, c.sec
		n.activeFromPrevious = f == previousFile
		n.log.Info("serving last-known-good bundle", "file", f, "serial", c.info.Serial, "hash", c.info.Hash)
		break
	}
	// The previous bundle is what a rollback returns to: know it from the start.
	if !n.activeFromPrevious {
		if c, err := n.load(filepath.Join(boot.DataDir, bundleDir, previousFile)); err == nil {
			n.previous = c.info
		}
	}
	// A restart in the middle of a bundle's watch resumes it (from when active.bundle was
	// written) rather than taking the bundle as good: a node that crash-loops on a bundle
	// must not report it healthy. The figures start again from this process's.
	n.watch = watchState{hash: hashOf(n.active), start: time.Now(), done: true}
	if n.active != nil && !n.activeFromPrevious {
		n.watch.start = n.active.Activated
		n.watch.done = time.Since(n.active.Activated) >= n.activePlan.Watch
	}
	if c, err := n.load(filepath.Join(boot.DataDir, bundleDir, pendingFile)); err == nil {
		if n.active == nil || c.info.Serial > n.active.Serial {
			c.info.State = "pending"
			n.pending = c
			n.log.Info("holding a bundle that waits for its rollout wave", "serial", c.info.Serial, "hash", c.info.Hash)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("pending bundle dropped at start", "err", err)
	}
	if n.active == nil {
		n.log.Warn("no bundle yet: every request gets 421 until one is pushed (rhizome push)")
	}
	accessLog := boot.AccessLog == nil || *boot.AccessLog
	n.switches.Store(new(n.controls.Switches()))
	n.stageModes.Store(&map[string]stages.Mode{})
	// The stage driver runs the request stages (rate limiting, the WAF, bot classification;
	// pay-per-crawl comes later) and obeys the mesh's kill switches.
	n.limiter = ratelimit.New(0)
	n.waf = waf.NewStage(n.log)
	bo := boot.Bots
	if bo.Logger == nil {
		bo.Logger = n.log
	}
	n.bots = bots.NewStage(bo)
	list := []stages.Stage{n.limiter, n.waf, n.bots}
	if boot.WrapStage != nil {
		for i := range list {
			list[i] = boot.WrapStage(list[i])
		}
	}
	n.driver = stages.New(list, stages.Options{Logger: n.log, Mode: func(stage, site string) stages.Mode {
		return (*n.stageModes.Load())[site+"\x00"+stage] // zero Mode: fail open, default budget
	}, Killed: func(stage, site string) bool {
		return control.Killed(*n.switches.Load(), stage, site)
	}})
	e, err := edge.StartSnapshot(snap, edge.Options{
		Listen: boot.Listen, AdminListen: boot.Admin, DataDir: boot.DataDir, Name: "rhizome-" + boot.Name, Stages: n.driver, RobotsTxt: n.bots.RobotsTxt,
		CacheMemory: boot.memory, CacheDisk: boot.dsk, AccessLog: accessLog, Logger: n.log,
		Admin: func(a *admin.Server) {
			a.Apply = func(b []byte) (any, error) { return n.Apply(b) }
			a.Bundle = func() any { return n.State() }
			a.Purged = func(req admin.PurgeRequest) {
				if n.gossip != nil {
					n.gossip.broadcastPurge(req)
				}
			}
			a.Control = func(b []byte) (any, error) { return n.AddControl(b) }
			a.Rollout = func() any { return n.Rollout() }
			a.Drain = func(on bool) error { return n.SetDraining(on) }
			a.Metrics = metrics.Handler(n.metricsSnapshot)
		},
	})
	if err != nil {
		return nil, err
	}
	n.Edge = e
	n.mu.Lock()
	n.useStagesLocked()
	n.mu.Unlock()
	n.watch.base = n.health()
	if boot.Mesh != nil {
		n.publish()
		if n.gossip, err = startGossip(n, boot.Mesh); err != nil {
			_ = e.Shutdown(context.Background())
			return nil, err
		}
		n.publish() // again: the fetch URL is known now when mesh.fetch had port 0
		if a := n.published.Load(); a != nil && a.Hash != "" {
			n.gossip.announce(*a)
		}
	}
	if boot.DNS != "" {
		n.steer = &steerer{n: n}
		n.dns = dns.NewServer(nil, dns.Config{Steerer: n.steer, Logger: n.log, RateLimit: boot.DNSRateLimit})
		n.mu.Lock()
		n.useDNSLocked()
		n.steer.refreshLocked()
		n.mu.Unlock()
		if err := n.dns.Start(boot.DNS); err != nil {
			n.Kill()
			return nil, fmt.Errorf("dns %s: %w", boot.DNS, err)
		}
		n.log.Info("authoritative DNS serving", "addr", n.dns.Addr())
	}
	n.driverWG.Add(1)
	go n.drive()
	n.poke()
	return n, nil
}

// publish makes the newest bundle this node holds and vouches for (the pending one unless
// it is halted, else the active one) what its digest reports, so that peers fetch it.
// Called with n.mu held or before the node is shared.
func (n *Node) publish() {
	a := &mesh.Announcement{From: n.boot.Name}
	if n.active != nil {
		a.Serial, a.Hash = n.active.Serial, n.active.Hash
	}
	if p := n.pending; p != nil && !n.controls.Bundle(p.info.Hash).Halted {
		a.Serial, a.Hash = p.info.Serial, p.info.Hash
	}
	if n.boot.Mesh != nil {
		a.URL = n.boot.Mesh.FetchURL
	}
	n.published.Store(a)
	held := a.Serial
	if n.pending != nil {
		held = max(held, n.pending.info.Serial)
	}
	n.held.Store(held)
}

// Active returns the bundle the node serves (nil for none). Cheaper than State, for
// simulations that poll many nodes.
func (n *Node) Active() *BundleInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active == nil {
		return nil
	}
	a := *n.active
	return &a
}

// Stopped says what the node's control records say about bundle hash.
func (n *Node) Stopped(hash string) control.BundleState { return n.controls.Bundle(hash) }

// DNSAddr is the address the node answers DNS on ("" without DNS).
func (n *Node) DNSAddr() string {
	if n.dns == nil {
		return ""
	}
	return n.dns.Addr()
}

// useDNSLocked gives the DNS server the zones and steering data of the active bundle.
// The bundle was validated, so compiling cannot fail unless the code changed under it.
func (n *Node) useDNSLocked() {
	if n.dns == nil {
		return
	}
	var cfg *bundle.DNS
	serial := uint64(0)
	if n.activeBody != nil {
		cfg, serial = n.activeBody.Config.DNS, n.activeBody.Serial
	}
	z, err := dns.Compile(cfg.ZoneSpecs(), uint32(serial))
	if err != nil {
		n.log.Error("dns zones of the active bundle do not compile; keeping the previous ones", "err", err)
		return
	}
	n.dns.Swap(z)
	n.steer.nodes.Store(compileDNSNodes(cfg))
}

// serveLocked makes c's compiled content what the node serves: the snapshot, the DNS zones
// and the request stages' settings. Every path that changes the active bundle (activation,
// rollback) goes through it, so that the parts cannot drift apart (a rollback that swapped
// the snapshot but not the stages once kept a bad bundle's bot settings running).
func (n *Node) serveLocked(c *candidate) {
	n.Edge.Proxy.Swap(c.snap)
	n.activeBody, n.activeSec = c.body, c.sec
	n.useDNSLocked()
	n.useStagesLocked()
}

// useStagesLocked gives the request stages the active bundle's compiled settings.
func (n *Node) useStagesLocked() {
	if n.limiter == nil || n.Edge == nil {
		return
	}
	sec := n.activeSec
	if sec == nil {
		sec = &security{modes: map[string]stages.Mode{}}
	}
	n.limiter.Update(sec.rate)
	n.waf.Use(sec.waf)
	n.bots.Use(sec.bots)
	n.stageModes.Store(&sec.modes)
}

// MeshAddr is the gossip address other nodes join (the bound one when mesh.bind has port
// 0); "" for a standalone node.
func (n *Node) MeshAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.mesh.Addr()
}

// Members lists the mesh as this node sees it (nil for a standalone node).
func (n *Node) Members() []mesh.Member {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.mesh.Members()
}

// Refusal reasons that are not about the bundle's bytes: the same bundle may be taken later.
var (
	errNotNewer = errors.New("older or replayed")
	errPersist  = errors.New("could not be written to the data dir")
	errHalted   = errors.New("halted")
)

// candidate is a bundle that passed every check.
type candidate struct {
	raw  []byte
	s    *bundle.Signed
	body *bundle.Body
	snap *snapshot.Snapshot
	sec  *security
	info *BundleInfo
	plan rollout.Plan

	// Before a later wave starts, the node confirms with the members of the wave before it,
	// directly, that they run the bundle healthy (see confirm).
	confirming  bool
	confirmed   time.Time
	lastConfirm time.Time
}

// load reads, verifies and compiles a stored bundle.
func (n *Node) load(path string) (*candidate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := n.check(b)
	if err != nil {
		return nil, err
	}
	st, _ := os.Stat(path)
	c.info.Activated = st.ModTime().UTC()
	return c, nil
}

// check runs every step a bundle must pass before it may serve: decode, signatures,
// validation, compilation, self-test. On error the returned candidate holds what could be
// read (for the refusal record), or is nil.
func (n *Node) check(b []byte) (*candidate, error) {
	s, err := bundle.Decode(b)
	if err != nil {
		return nil, err
	}
	c := &candidate{raw: b, s: s}
	body, err := bundle.Verify(s, n.boot.trust)
	if err != nil {
		return c, err
	}
	snap, err := snapshot.Compile(body.Config.Spec(strconv.FormatUint(body.Serial, 10)))
	if err != nil {
		return c, fmt.Errorf("%w: %w", bundle.ErrInvalid, err)
	}
	if err := SelfTest(snap); err != nil {
		return c, fmt.Errorf("self-test: %w", err)
	}
	sec, err := compileSecurity(body.Config, snap)
	if err != nil {
		return c, fmt.Errorf("%w: %w", bundle.ErrInvalid, err)
	}
	c.body, c.snap, c.sec, c.plan = body, snap, sec, body.Config.Plan()
	c.info = info(s, body, snap, n.boot.trust)
	return c, nil
}

// Apply takes a bundle pushed by an operator or fetched from a peer: it runs every check,
// then holds the bundle until this node's rollout wave may start (at once for the first
// wave, for a bundle without waves, and for a standalone node), or refuses it with the
// reason and keeps serving what it had. Safe for concurrent use; applies are serialised.
func (n *Node) Apply(b []byte) (*BundleInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.check(b)
	if err == nil {
		err = n.admissible(c)
	}
	if err != nil {
		var s *bundle.Signed
		if c != nil {
			s = c.s
		}
		n.refuse(s, err)
		return nil, err
	}
	if p := n.pending; p != nil && p.info.Hash == c.info.Hash {
		return n.pendingInfoLocked(), nil // pushed again: already held
	}
	if err := writeAtomic(filepath.Join(n.boot.DataDir, bundleDir, pendingFile), b); err != nil {
		err = fmt.Errorf("bundle %w: %w", errPersist, err)
		n.refuse(c.s, err)
		return nil, err
	}
	c.info.State = "pending"
	n.pending = c
	n.publish()
	n.log.Info("bundle accepted", "serial", c.info.Serial, "hash", c.info.Hash, "signers", c.info.Signers, "waves", len(c.plan.Waves))
	if n.gossip != nil {
		n.gossip.announce(*n.published.Load())
	}
	n.stepLocked(time.Now())
	n.poke()
	if n.pending == nil && n.active != nil && n.active.Hash == c.info.Hash {
		return n.active, nil
	}
	return n.pendingInfoLocked(), nil
}

// admissible refuses bundles that are not newer than what the node runs or holds, and
// halted ones. Re-taking the held bundle itself (pushed twice, or fetched again after a
// resume) is allowed.
func (n *Node) admissible(c *candidate) error {
	serial, hash := c.body.Serial, c.info.Hash
	if st := n.controls.Bundle(hash); st.Halted {
		return fmt.Errorf("bundle %s is %w: %s", short(hash), errHalted, st.Reason)
	}
	if n.active != nil && serial <= n.active.Serial {
		return fmt.Errorf("serial %d is not above the active %d: %w bundles are refused (a rollback is a new bundle with a higher serial)", serial, n.active.Serial, errNotNewer)
	}
	if p := n.pending; p != nil && (serial < p.info.Serial || serial == p.info.Serial && hash != p.info.Hash) {
		return fmt.Errorf("serial %d is not above the held %d: %w bundles are refused", serial, p.info.Serial, errNotNewer)
	}
	return nil
}

// pendingInfoLocked describes the held bundle.
func (n *Node) pendingInfoLocked() *BundleInfo {
	if n.pending == nil {
		return nil
	}
	i := *n.pending.info
	return &i
}

// activateLocked makes the held bundle c the active one.
func (n *Node) activateLocked(c *candidate, now time.Time) error {
	dir := filepath.Join(n.boot.DataDir, bundleDir)
	if err := writeAtomic(filepath.Join(dir, "next.bundle"), c.raw); err != nil {
		return err
	}
	// The bundle being replaced becomes the previous one (what a rollback returns to) if it
	// is good: watched healthy to the end. One replaced while still under watch is
	// dropped and the last good one stays the previous, unless there is none: a doubtful
	// bundle to return to beats none. Never one served from previous.bundle because
	// active.bundle was damaged: that would overwrite the good file.
	demote := n.active != nil && !n.activeFromPrevious && !n.watch.unhealthy &&
		(n.watch.done || n.previous == nil)
	if demote {
		if err := os.Rename(filepath.Join(dir, activeFile), filepath.Join(dir, previousFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Warn("keeping the previous bundle failed", "err", err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "next.bundle"), filepath.Join(dir, activeFile)); err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	if n.pending == c {
		n.pending = nil
		_ = os.Remove(filepath.Join(dir, pendingFile))
	}
	n.serveLocked(c)
	n.activeFromPrevious = false
	info := *c.info
	info.State, info.Activated, info.Waiting = "active", now.UTC(), ""
	if demote {
		prev := *n.active
		prev.State = ""
		n.previous = &prev
	}
	n.active, n.activePlan = &info, c.plan
	n.watch = watchState{hash: info.Hash, start: now, base: n.health()}
	n.publish()
	n.log.Info("bundle activated", "serial", info.Serial, "hash", info.Hash, "signers", info.Signers, "wave", info.Wave)
	if n.gossip != nil {
		n.gossip.announce(*n.published.Load())
	}
	return nil
}

func (n *Node) refuse(s *bundle.Signed, err error) {
	r := Refusal{Time: time.Now().UTC(), Reason: err.Error()}
	if s != nil {
		r.Hash = s.Hash()
		var probe struct {
			Serial uint64 `json:"serial"`
		}
		if json.Unmarshal(s.Body, &probe) == nil {
			r.Serial = probe.Serial
		}
	}
	n.log.Warn("bundle refused", "serial", r.Serial, "hash", r.Hash, "reason", r.Reason)
	n.refusedTotal.Add(1)
	n.refused = append(n.refused, r)
	if len(n.refused) > maxRefusals {
		n.refused = n.refused[len(n.refused)-maxRefusals:]
	}
}

// State reports the node's bundles.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := State{Node: n.boot.Name, Region: n.boot.Region, Provider: n.boot.Provider, Active: n.active, Previous: n.previous,
		Pending: n.pendingInfoLocked(), Refused: append([]Refusal(nil), n.refused...), Trust: TrustSummary{Required: n.boot.trust.Required},
		KillSwitches: n.controls.Switches(), Draining: n.draining.Load()}
	if n.dns != nil {
		ds := n.dns.Stats()
		st.DNS = &ds
	}
	for id := range n.boot.trust.Keys {
		st.Trust.Keys = append(st.Trust.Keys, id)
	}
	st.Members = n.Members()
	for _, m := range st.Members {
		if m.Name == n.boot.Name || m.State != mesh.StateAlive {
			continue
		}
		ps := PeerState{Name: m.Name}
		if rep := n.verifiedReport(m); rep != nil {
			ps.Serial, ps.Bundle, ps.Healthy, ps.Figures, ps.Draining = rep.Serial, rep.Bundle, rep.Healthy, rep.Figures, rep.Draining
		} else if c, ok := n.reports[m.Name]; ok && c.err != nil {
			ps.Error = c.err.Error()
		}
		st.Peers = append(st.Peers, ps)
	}
	st.Rollout = n.rolloutLocked(time.Now())
	if n.driver != nil {
		st.Stages = &StageState{Driver: n.driver.Stats(), RateLimit: n.limiter.Stats(), WAF: n.waf.Stats(), Bots: n.bots.Stats()}
	}
	return st
}

// Kill stops the node abruptly, as kill -9 would: no goodbye to the mesh, so the others
// must detect the failure. For simulations and tests.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.stopDriver()
		if n.dns != nil {
			_ = n.dns.Shutdown(context.Background())
		}
		if n.gossip != nil {
			n.gossip.mu.Lock()
			n.gossip.cancel()
			n.gossip.mu.Unlock()
			_ = n.gossip.mesh.Shutdown()
			_ = n.gossip.srv.Close()
			n.gossip.wg.Wait()
		}
		n.stopErr = n.Edge.Shutdown(context.Background())
	})
}

// Shutdown leaves the mesh and stops serving. Calling it again does nothing.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.stopDriver()
		if n.dns != nil {
			_ = n.dns.Shutdown(ctx)
		}
		if n.gossip != nil {
			n.gossip.stop()
		}
		n.stopErr = n.Edge.Shutdown(ctx)
	})
	return n.stopErr
}

func info(s *bundle.Signed, body *bundle.Body, snap *snapshot.Snapshot, trust bundle.Trust) *BundleInfo {
	return &BundleInfo{Serial: body.Serial, Hash: s.Hash(), Parent: body.Parent, Created: body.Created,
		Sites: len(snap.Sites()), Signers: bundle.ValidSigners(s, trust)}
}

func hashOf(i *BundleInfo) string {
	if i == nil {
		return ""
	}
	return i.Hash
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil { // the last-known-good must survive a power cut
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SelfTest sends a synthetic request for each site of snap through a real proxy handler
// whose origins are simulated, so that a configuration that compiles but cannot serve (or
// that panics on the request path) is refused before it replaces a working one.
func SelfTest(snap *snapshot.Snapshot) (err error) {
	reg := upstream.NewRegistry(upstream.RegistryOptions{Transport: selfTestOrigin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer reg.Close()
	h := proxy.New(snap, proxy.Config{Transport: selfTestOrigin, Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, site := range snap.Sites() {
		host := site.Hosts[0]
		switch {
		case host == "*":
			host = "self-test.invalid"
		case strings.HasPrefix(host, "*."):
			host = "self-test" + host[1:]
		}
		code, perr := serveOnce(h, host)
		if perr != nil || h.Health().Panics > 0 {
			return fmt.Errorf("site %s: the request path panicked: %v", site.Name, perr)
		}
		if code != http.StatusOK {
			return fmt.Errorf("site %s: a request for %s got %d from a healthy simulated origin", site.Name, host, code)
		}
	}
	return nil
}

// selfTestOrigin simulates a healthy origin for SelfTest. A variable so that tests can
// simulate a data plane that breaks on a configuration.
var selfTestOrigin http.RoundTripper = roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Cache-Control": {"no-store"}}, Body: io.NopCloser(strings.NewReader("self-test")), ContentLength: 9, Request: r}, nil
})

func serveOnce(h http.Handler, host string) (code int, perr any) {
	defer func() { perr = recover() }()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	r.RemoteAddr = "192.0.2.1:1"
	h.ServeHTTP(w, r)
	return w.Code, nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
