package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// maxSeen bounds the relay table (one entry per announcing node).
const maxSeen = 4096

// ErrShutdown is returned by methods called after [Mesh.Shutdown].
var ErrShutdown = errors.New("mesh: shut down")

// Mesh is this node's membership in the mesh. Create it with [Start]; all
// methods are safe for concurrent use. Call [Mesh.Shutdown] to release its
// sockets and goroutines.
type Mesh struct {
	purges   seenSet[string]   // purge ids delivered, bounded by maxPurgeIDs
	controls seenSet[[32]byte] // control record hashes delivered, bounded by maxControlIDs

	cfg   settings
	meta  atomic.Pointer[encodedMeta] // what NodeMeta sends; SetMeta replaces it
	log   *slog.Logger
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	addr  string // advertised host:port, fixed after Start

	mu      sync.Mutex
	members map[string]memberEntry
	alive   int
	seen    map[string]uint64 // announcer -> highest serial relayed or announced

	lifeMu       sync.Mutex // serialises Leave, Join and Shutdown against memberlist
	closed       atomic.Bool
	left         atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup
	shutdownOnce sync.Once

	stats struct {
		announced, heard, digests, relayed, malformed atomic.Uint64
	}
}

// Start validates c, binds the gossip sockets, and starts the node. If
// c.Join is not empty it joins those peers in the background, retrying every
// c.RetryJoin until one answers. On error nothing is left running.
func Start(c Config) (*Mesh, error) {
	s, err := validate(c)
	if err != nil {
		return nil, err
	}
	m := &Mesh{
		cfg:     s,
		log:     s.Logger.With("node", s.Name),
		members: make(map[string]memberEntry),
		seen:    make(map[string]uint64),
		stop:    make(chan struct{}),
	}
	m.meta.Store(&encodedMeta{meta: s.meta, leaving: s.leaving})
	mc := memberlistConfig(s)
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       m.numAlive,
		RetransmitMult: mc.RetransmitMult,
	}
	mc.Delegate = mlDelegate{m}
	mc.Events = mlEvents{m}
	mc.Logger = newMemberlistLogger(s.Logger)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("mesh: start %q on %s: %w", s.Name, s.Bind, err)
	}
	m.ml = ml
	// Only Addr and Port are read: memberlist does not rewrite them after
	// Create, unlike the local node's state fields.
	local := ml.LocalNode()
	m.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	m.log.Info("mesh: started", "addr", m.addr, "fast", s.Fast,
		"encrypted", s.Key != nil, "push_pull", mc.PushPullInterval)
	if s.Key == nil {
		m.log.Warn("mesh: gossip is not encrypted (no Key): for tests and local demos only")
	}
	if len(s.Join) > 0 {
		m.wg.Add(1)
		go m.joinLoop(s.Join)
	}
	return m, nil
}

// joinLoop joins peers, retrying every RetryJoin until one answers, the node
// leaves, or it shuts down.
func (m *Mesh) joinLoop(peers []string) {
	defer m.wg.Done()
	for attempt := 1; ; attempt++ {
		n, err := m.Join(peers)
		if n > 0 {
			m.log.Info("mesh: joined", "contacted", n, "peers", peers)
			return
		}
		if errors.Is(err, ErrShutdown) || m.left.Load() {
			return
		}
		m.log.Warn("mesh: join failed, will retry", "peers", peers, "attempt", attempt,
			"retry_in", m.cfg.RetryJoin, "err", err)
		t := time.NewTimer(m.cfg.RetryJoin)
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Join contacts peers (host:port) now and returns how many answered. It
// blocks for up to memberlist's TCP timeout per unreachable peer (1s Fast,
// 10s otherwise). Start already joins Config.Join in the background; Join is
// for joining more peers later.
func (m *Mesh) Join(peers []string) (int, error) {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Load() {
		return 0, ErrShutdown
	}
	n, err := m.ml.Join(peers)
	if err != nil {
		err = fmt.Errorf("mesh: join %v: %w", peers, err)
	}
	return n, err
}

// Announce queues a for gossip to the mesh. Empty From and URL default to
// this node's name and Meta.FetchURL. Each node that hears an announcement
// newer than any it saw from that announcer relays it, and a newer
// announcement from the same node invalidates older ones still queued.
// Gossip is best effort; the digests exchanged in push/pull back it up.
// An invalid announcement is logged and dropped. Announce never blocks on
// the network; after Shutdown it does nothing.
func (m *Mesh) Announce(a Announcement) {
	if m.closed.Load() {
		return
	}
	if a.From == "" {
		a.From = m.cfg.Name
	}
	if a.URL == "" {
		a.URL = m.cfg.Meta.FetchURL
	}
	buf, err := encodeMessage(MsgAnnounce, a)
	if err != nil {
		m.log.Warn("mesh: not announcing invalid announcement", "serial", a.Serial, "err", err)
		return
	}
	m.mu.Lock()
	if prev, ok := m.seen[a.From]; !ok || a.Serial > prev {
		m.recordSeenLocked(a)
	}
	m.mu.Unlock()
	m.stats.announced.Add(1)
	m.queue.QueueBroadcast(&announceBroadcast{a: a, msg: buf})
	m.log.Debug("mesh: announced", "from", a.From, "serial", a.Serial, "hash", a.Hash)
}

// noteSeen records a and reports whether it is newer than anything seen from
// its announcer (and so should be relayed).
func (m *Mesh) noteSeen(a Announcement) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.seen[a.From]; ok && a.Serial <= prev {
		return false
	}
	m.recordSeenLocked(a)
	return true
}

// recordSeenLocked stores a's serial, evicting an arbitrary entry when the
// table is full. m.mu must be held.
func (m *Mesh) recordSeenLocked(a Announcement) {
	if _, ok := m.seen[a.From]; !ok && len(m.seen) >= maxSeen {
		for k := range m.seen {
			delete(m.seen, k)
			break
		}
	}
	m.seen[a.From] = a.Serial
}

// encodedMeta is the node metadata ready to send, normally and when leaving.
type encodedMeta struct{ meta, leaving []byte }

// SetMeta replaces this node's metadata and tells the mesh, waiting up to timeout for the
// update to go out to at least one member (memberlist's UpdateNode). A Meta that does not
// fit MaxMetaSize is an error and changes nothing. It must not be called from a Delegate
// method.
func (m *Mesh) SetMeta(meta Meta, timeout time.Duration) error {
	leaving, err := encodeMeta(wireMeta{Meta: meta, Leaving: true})
	if err != nil {
		return fmt.Errorf("mesh: meta: %w", err)
	}
	enc, _ := encodeMeta(wireMeta{Meta: meta})
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Load() {
		return ErrShutdown
	}
	m.meta.Store(&encodedMeta{meta: enc, leaving: leaving})
	if m.left.Load() {
		return nil
	}
	if err := m.ml.UpdateNode(timeout); err != nil {
		// The new metadata is in place and push/pull will carry it; only the prompt
		// broadcast was not confirmed.
		m.log.Debug("mesh: metadata update not confirmed sent", "err", err)
	}
	return nil
}

// LocalName returns this node's name.
func (m *Mesh) LocalName() string { return m.cfg.Name }

// Addr returns the host:port other nodes use to reach this one (with Bind
// port 0, the port actually bound).
func (m *Mesh) Addr() string { return m.addr }

// Stats are counters since Start, for metrics and tests.
type Stats struct {
	Announced uint64 // Announce calls queued
	Heard     uint64 // gossiped announcements passed to Heard
	Digests   uint64 // remote digests passed to Heard
	Relayed   uint64 // announcements re-queued for relay
	Malformed uint64 // messages and remote states dropped
	Queued    int    // broadcasts waiting in the queue now
}

// Stats returns the current counters.
func (m *Mesh) Stats() Stats {
	return Stats{
		Announced: m.stats.announced.Load(),
		Heard:     m.stats.heard.Load(),
		Digests:   m.stats.digests.Load(),
		Relayed:   m.stats.relayed.Load(),
		Malformed: m.stats.malformed.Load(),
		Queued:    m.queue.NumQueued(),
	}
}

// Leave tells the mesh this node is going and stops background join
// retries. It first gossips metadata marking the node as leaving (so peers
// report it "left", not "dead"), then memberlist's leave message, waiting up
// to timeout in all (0 = no limit) for them to go out. The node keeps
// answering gossip until Shutdown, which should follow.
func (m *Mesh) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Load() {
		return ErrShutdown
	}
	start := time.Now()
	if !m.left.Swap(true) {
		// Half the budget for the farewell metadata, the rest for leaving.
		if err := m.ml.UpdateNode(timeout / 2); err != nil {
			m.log.Debug("mesh: leaving metadata not confirmed sent", "err", err)
		}
	}
	rest := time.Duration(0)
	if timeout > 0 {
		rest = max(timeout-time.Since(start), time.Millisecond)
	}
	if err := m.ml.Leave(rest); err != nil {
		return fmt.Errorf("mesh: leave: %w", err)
	}
	m.log.Info("mesh: left")
	return nil
}

// Shutdown stops the node without telling the others (they will detect it
// as failed; call Leave first to go gracefully), closes its sockets and waits
// for its background goroutines. Safe to call more than once; later calls
// return nil.
func (m *Mesh) Shutdown() error {
	var err error
	m.shutdownOnce.Do(func() {
		close(m.stop)
		m.lifeMu.Lock()
		m.closed.Store(true)
		err = m.ml.Shutdown()
		m.lifeMu.Unlock()
		m.wg.Wait()
		m.queue.Reset()
		if err != nil {
			err = fmt.Errorf("mesh: shutdown: %w", err)
		}
		m.log.Info("mesh: shut down")
	})
	return err
}
