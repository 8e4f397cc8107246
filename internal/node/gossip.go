package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/control"
	"rhizome/internal/mesh"
)

// gossip is a node's part in the mesh: it announces the bundle it runs, serves bundles to
// peers by hash, and fetches and applies newer bundles it hears of. Nothing here can make a
// node run a bundle that Apply would refuse: a fetched bundle goes through every check.
type gossip struct {
	n      *Node
	mesh   *mesh.Mesh
	srv    *http.Server
	url    string
	client *http.Client

	purges purgeLog

	mu         sync.Mutex
	catchingUp bool // a purge catch-up is running
	// A control catch-up is running / last started.
	syncingControls bool
	lastControlSync time.Time
	fetching        map[string]bool      // hashes being fetched
	refused         map[string]bool      // hashes that failed verification: never fetched again
	failed          map[string]time.Time // hashes whose fetch failed: retried after fetchRetry
	wg              sync.WaitGroup
	ctx             context.Context
	cancel          context.CancelFunc
}

const (
	fetchRetry = 2 * time.Second
	// controlSyncEvery spaces control catch-ups: digests differ for a moment after every
	// new record, while gossip is still delivering it.
	controlSyncEvery = time.Second
)

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func startGossip(n *Node, c *MeshConfig) (*gossip, error) {
	g := &gossip{n: n, url: c.FetchURL, client: &http.Client{Timeout: 10 * time.Second},
		fetching: map[string]bool{}, refused: map[string]bool{}, failed: map[string]time.Time{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", c.Fetch)
	if err != nil {
		return nil, fmt.Errorf("mesh.fetch %s: %w", c.Fetch, err)
	}
	if c.FetchURL == "http://"+c.Fetch && strings.HasSuffix(c.Fetch, ":0") {
		// Port 0 (tests, simulations): peers must be told the port actually bound.
		c.FetchURL = "http://" + ln.Addr().String()
		g.url = c.FetchURL
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bundles/{hash}", g.serveBundle)
	mux.HandleFunc("GET /v1/purges", g.servePurges)
	mux.HandleFunc("GET /v1/controls", g.serveControls)
	mux.HandleFunc("GET /v1/report", g.serveReport)
	g.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	g.mesh, err = mesh.Start(mesh.Config{
		Name: n.boot.Name, Bind: c.Bind, Advertise: c.Advertise, Join: c.Join, Key: n.boot.meshKey,
		Meta: mesh.Meta{Region: n.boot.Region, Provider: n.boot.Provider, FetchURL: g.url,
			Key: bundle.FormatPublicKey(n.key.Public().(ed25519.PublicKey))},
		Delegate: g, Logger: n.log, Fast: c.FastTimers, ProbeInterval: c.probe, SuspicionMult: c.SuspicionMult,
		// A member that died or changed its report changes who DNS names: step at once.
		OnChange: n.poke,
	})
	if err != nil {
		_ = g.srv.Close()
		return nil, fmt.Errorf("mesh: %w", err)
	}
	return g, nil
}

// serveBundle gives a peer the bundle with a hash, if it is ours. Bundles are signed and
// content-addressed: serving them needs no authentication, and a peer checks everything.
func (g *gossip) serveBundle(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	if !hashRE.MatchString(hash) {
		http.Error(w, "bad hash", http.StatusBadRequest)
		return
	}
	for _, f := range []string{activeFile, pendingFile, previousFile} {
		b, err := os.ReadFile(filepath.Join(g.n.boot.DataDir, bundleDir, f))
		if err != nil {
			continue
		}
		if s, err := bundle.Decode(b); err == nil && s.Hash() == hash {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
			return
		}
	}
	http.Error(w, "no such bundle here", http.StatusNotFound)
}

// Digest implements mesh.Delegate: what this node runs. It must not block, so it reads the
// atomically published summary, never n.mu (held while a bundle is being checked).
func (g *gossip) Digest() mesh.Announcement {
	a := mesh.Announcement{From: g.n.boot.Name}
	if p := g.n.published.Load(); p != nil {
		a = *p
	}
	a.LastPurge = g.purges.newest()
	a.Controls = g.n.controls.Digest()
	return a
}

// Heard implements mesh.Delegate: a peer runs a bundle. A newer one is fetched and applied
// in the background.
func (g *gossip) Heard(a mesh.Announcement) {
	if a.URL != "" && a.LastPurge > g.purges.newest() {
		g.mu.Lock()
		if !g.catchingUp && g.ctx.Err() == nil {
			g.catchingUp = true
			g.wg.Add(1)
			go g.catchUpPurges(a)
		}
		g.mu.Unlock()
	}
	if a.URL != "" && a.Controls != "" && a.Controls != g.n.controls.Digest() {
		g.syncOnce(true, func() { g.fetchControls(a.URL, a.From) })
	}
	if a.Hash == "" || a.URL == "" || !hashRE.MatchString(a.Hash) || g.n.controls.Bundle(a.Hash).Halted {
		return
	}
	if a.Serial <= g.n.held.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil || g.fetching[a.Hash] || g.refused[a.Hash] || time.Since(g.failed[a.Hash]) < fetchRetry {
		return
	}
	g.fetching[a.Hash] = true
	g.wg.Add(1)
	go g.fetch(a)
}

func (g *gossip) fetch(a mesh.Announcement) {
	defer g.wg.Done()
	b, err := g.get(a)
	g.mu.Lock()
	delete(g.fetching, a.Hash)
	g.mu.Unlock()
	if err != nil {
		g.n.log.Warn("bundle fetch failed", "from", a.From, "serial", a.Serial, "hash", a.Hash, "err", err)
		g.mu.Lock()
		g.failed[a.Hash] = time.Now()
		g.mu.Unlock()
		return
	}
	if _, err := g.n.Apply(b); err != nil {
		if errors.Is(err, errNotNewer) || errors.Is(err, errHalted) || errors.Is(err, errPersist) {
			g.mu.Lock()
			g.failed[a.Hash] = time.Now() // may be taken later; not again at once
			g.mu.Unlock()
		} else {
			g.mu.Lock()
			g.refused[a.Hash] = true // the same bytes will fail the same way: never again
			g.mu.Unlock()
		}
		return
	}
	g.n.log.Info("bundle received from the mesh", "from", a.From, "serial", a.Serial)
}

// get downloads a bundle and checks that it is the one announced (content addressing).
func (g *gossip) get(a mesh.Announcement) ([]byte, error) {
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, a.URL+"/v1/bundles/"+a.Hash, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", a.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, bundle.MaxBundleBytes+1))
	if err != nil {
		return nil, err
	}
	s, err := bundle.Decode(b)
	if err != nil {
		return nil, err
	}
	if s.Hash() != a.Hash {
		return nil, fmt.Errorf("%s served bundle %s for %s", a.URL, s.Hash(), a.Hash)
	}
	return b, nil
}

func (g *gossip) announce(a mesh.Announcement) { g.mesh.Announce(a) }

func (g *gossip) stop() {
	g.mu.Lock()
	g.cancel() // under g.mu: handOff checks the context there before adding to wg
	g.mu.Unlock()
	_ = g.mesh.Leave(time.Second)
	_ = g.mesh.Shutdown()
	_ = g.srv.Close()
	g.wg.Wait()
}

// serveControls gives a peer this node's control records. They are signed: serving them
// needs no authentication, and the peer checks each one.
func (g *gossip) serveControls(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(g.n.controls.Signed())
}

// syncOnce runs a control catch-up on its own goroutine unless one is running (or, when
// spaced, one started less than controlSyncEvery ago): the digest path and the poll share
// it, so a node never fetches record sets from two peers at once.
func (g *gossip) syncOnce(spaced bool, fn func()) {
	g.mu.Lock()
	if g.syncingControls || g.ctx.Err() != nil || spaced && time.Since(g.lastControlSync) <= controlSyncEvery {
		g.mu.Unlock()
		return
	}
	g.syncingControls, g.lastControlSync = true, time.Now()
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		defer func() {
			g.mu.Lock()
			g.syncingControls = false
			g.mu.Unlock()
		}()
		fn()
	}()
}

// fetchReport asks a peer for its current signed report and control digest.
func (g *gossip) fetchReport(url string) (reportAnswer, error) {
	var a reportAnswer
	ctx, cancel := context.WithTimeout(g.ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/report", nil)
	if err != nil {
		return a, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a)
	return a, err
}

// fetchControls takes a peer's control records.
func (g *gossip) fetchControls(url, from string) {
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, url+"/v1/controls", nil)
	if err != nil {
		return
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.n.log.Debug("control catch-up failed", "from", from, "err", err)
		return
	}
	defer resp.Body.Close()
	var list []control.Signed
	if resp.StatusCode != http.StatusOK {
		return
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		g.n.log.Debug("control catch-up: bad answer", "from", from, "err", err)
		return
	}
	g.n.heardControls(list)
	g.n.synced.Store(true)
}

// HeardControl implements mesh.ControlDelegate: a gossiped control record. Checking it
// takes n.mu, which Apply may hold for a while, so it is handled off memberlist's goroutine.
func (g *gossip) HeardControl(payload []byte) {
	s, err := control.Decode(payload)
	if err != nil {
		g.n.log.Debug("malformed control record", "err", err)
		return
	}
	g.handOff(func() { g.n.heardControl(s) })
}

// handOff runs fn on its own goroutine, counted for shutdown, unless the node is stopping:
// memberlist's delegate callbacks must not block, and what they hear often needs n.mu or a
// walk of the cache.
func (g *gossip) handOff(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
}

// reportAnswer is what GET /v1/report returns: the node's current signed report and the
// digest of its control records.
type reportAnswer struct {
	Report   json.RawMessage `json:"report"`
	Controls string          `json:"controls"`
}

// serveReport gives a peer this node's current signed health report.
func (g *gossip) serveReport(w http.ResponseWriter, r *http.Request) {
	var a reportAnswer
	if raw := g.n.reportRaw.Load(); raw != nil {
		a.Report = *raw
	}
	a.Controls = g.n.controls.Digest()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}

// confirm asks each of names, directly over HTTP, for its current signed report, and takes
// its control records when they differ from this node's: a node about to start a later
// wave does not rely on gossip alone, which may have lost a halt or a canary's rollback.
// It succeeds only if every one of them runs p's bundle, healthy, and p is not halted
// after the records were merged.
func (g *gossip) confirm(p *candidate, names []string, members map[string]mesh.Member) {
	g.handOff(func() { g.n.confirmDone(p, g.confirmAll(p, names, members)) })
}

func (g *gossip) confirmAll(p *candidate, names []string, members map[string]mesh.Member) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, name := range names {
		if name == g.n.boot.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = g.confirmOne(p, name, members[name])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if st := g.n.controls.Bundle(p.info.Hash); st.Halted {
		return fmt.Errorf("halted: %s", st.Reason)
	}
	return nil
}

func (g *gossip) confirmOne(p *candidate, name string, m mesh.Member) error {
	if m.Meta.FetchURL == "" || m.State != mesh.StateAlive {
		return fmt.Errorf("%s: not reachable", name)
	}
	a, err := g.fetchReport(m.Meta.FetchURL)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if a.Controls != "" && a.Controls != g.n.controls.Digest() {
		g.fetchControls(m.Meta.FetchURL, name)
	}
	pub, err := bundle.ParsePublicKey(m.Meta.Key)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	rep, err := control.VerifyReport(a.Report, name, pub)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if rep.Bundle != p.info.Hash {
		return fmt.Errorf("%s runs serial %d, not %d", name, rep.Serial, p.info.Serial)
	}
	if !rep.Healthy {
		return fmt.Errorf("%s reports unhealthy", name)
	}
	return nil
}

// pollControls compares this node's control records with one random alive member's, over
// HTTP, and takes the member's if they differ. memberlist's push/pull does the same through
// the digest, but at its interval, which memberlist stretches with the mesh's size (two
// minutes at 200 nodes); a halt lost by gossip must reach the nodes running the bundle
// sooner. One request per node every few seconds.
func (g *gossip) pollControls() {
	var peers []mesh.Member
	for _, m := range g.mesh.Members() {
		if m.State == mesh.StateAlive && m.Name != g.n.boot.Name && m.Meta.FetchURL != "" {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return
	}
	m := peers[rand.IntN(len(peers))]
	g.syncOnce(false, func() {
		a, err := g.fetchReport(m.Meta.FetchURL)
		switch {
		case err != nil:
		case a.Controls != g.n.controls.Digest():
			g.fetchControls(m.Meta.FetchURL, m.Name)
		default:
			g.n.synced.Store(true)
		}
	})
}
