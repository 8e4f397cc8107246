package node

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"rhizome/internal/admin"
	"rhizome/internal/mesh"
)

// purgeLog keeps the purges a node applied recently, so that a peer that was away can ask
// for the ones it missed (GET /v1/purges?since=). In memory: a restarted node has an
// empty log, and catches up from its peers' logs.
type purgeLog struct {
	mu      sync.Mutex
	entries []mesh.Purge // oldest first
	last    int64        // newest At applied, unix ms
	applied map[string]bool
}

const (
	purgeLogMax    = 1024             // purges kept for peers
	purgeCatchSkew = int64(60 * 1000) // ms asked for before our newest, for clock skew between nodes
)

// add records p and reports whether it is new.
func (l *purgeLog) add(p mesh.Purge) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.applied == nil {
		l.applied = map[string]bool{}
	}
	if l.applied[p.ID] {
		return false
	}
	l.applied[p.ID] = true
	l.entries = append(l.entries, p)
	if len(l.entries) > purgeLogMax {
		delete(l.applied, l.entries[0].ID)
		l.entries = l.entries[1:]
	}
	l.last = max(l.last, p.At)
	return true
}

func (l *purgeLog) since(ms int64) []mesh.Purge {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []mesh.Purge
	for _, p := range l.entries {
		if p.At > ms {
			out = append(out, p)
		}
	}
	return out
}

func (l *purgeLog) newest() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// broadcastPurge passes a purge made through this node's admin API to the mesh, split so
// that each message fits a gossip packet. It was already applied here.
func (g *gossip) broadcastPurge(req admin.PurgeRequest) {
	now := time.Now().UnixMilli()
	var cur mesh.Purge
	flush := func() {
		if len(cur.URLs)+len(cur.Prefixes)+len(cur.Tags) == 0 {
			return
		}
		cur.ID, cur.From, cur.At = newPurgeID(), g.n.boot.Name, now
		g.purges.add(cur)
		if err := g.mesh.Purge(cur); err != nil {
			g.n.log.Warn("purge not passed to the mesh", "err", err)
		}
		cur = mesh.Purge{}
	}
	add := func(field *[]string, v string) {
		*field = append(*field, v)
		cur.ID, cur.From, cur.At = newPurgeID(), g.n.boot.Name, now // for the size estimate
		if cur.EncodedSize() > mesh.MaxMessageSize {
			*field = (*field)[:len(*field)-1]
			flush()
			*field = append(*field, v)
		}
	}
	for _, u := range req.URLs {
		add(&cur.URLs, u)
	}
	for _, p := range req.Prefixes {
		add(&cur.Prefixes, p)
	}
	for _, t := range req.Tags {
		add(&cur.Tags, t)
	}
	flush()
}

// HeardPurge implements mesh.PurgeDelegate: a purge made on another node. It runs on a
// memberlist goroutine and must not block, while a prefix purge walks the whole cache
// index: the work is handed off.
func (g *gossip) HeardPurge(p mesh.Purge) {
	g.handOff(func() { g.applyPurge(p) })
}

func (g *gossip) applyPurge(p mesh.Purge) {
	if !g.purges.add(p) || g.n.Edge.Store == nil {
		return
	}
	n, err := admin.Purge(g.n.Edge.Store, admin.PurgeRequest{URLs: p.URLs, Prefixes: p.Prefixes, Tags: p.Tags})
	if err != nil {
		g.n.log.Warn("purge from the mesh refused", "from", p.From, "id", p.ID, "err", err)
		return
	}
	g.n.log.Info("purge from the mesh", "from", p.From, "id", p.ID, "purged", n)
}

// servePurges gives a peer the purges applied here after ?since= (unix ms).
func (g *gossip) servePurges(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		http.Error(w, "since: want unix milliseconds", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(g.purges.since(since))
}

// catchUpPurges fetches, from a peer whose digest shows newer purges, the ones this node
// may have missed (it was down or cut off), and applies those it has not.
func (g *gossip) catchUpPurges(a mesh.Announcement) {
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		g.catchingUp = false
		g.mu.Unlock()
	}()
	since := max(0, g.purges.newest()-purgeCatchSkew)
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, a.URL+"/v1/purges?since="+strconv.FormatInt(since, 10), nil)
	if err != nil {
		return
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.n.log.Debug("purge catch-up failed", "from", a.From, "err", err)
		return
	}
	defer resp.Body.Close()
	var ps []mesh.Purge
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&ps); err != nil {
		return
	}
	for _, p := range ps {
		if p.Validate() == nil {
			g.applyPurge(p)
		}
	}
}

func newPurgeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
