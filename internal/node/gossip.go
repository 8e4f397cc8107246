package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"rhizome/internal/bundle"
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
	catchingUp bool                 // a purge catch-up is running
	fetching   map[string]bool      // hashes being fetched
	refused    map[string]bool      // hashes that failed verification: never fetched again
	failed     map[string]time.Time // hashes whose fetch failed: retried after fetchRetry
	wg         sync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
}

const fetchRetry = 2 * time.Second

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func startGossip(n *Node, c *MeshConfig) (*gossip, error) {
	g := &gossip{n: n, url: c.FetchURL, client: &http.Client{Timeout: 10 * time.Second},
		fetching: map[string]bool{}, refused: map[string]bool{}, failed: map[string]time.Time{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", c.Fetch)
	if err != nil {
		return nil, fmt.Errorf("mesh.fetch %s: %w", c.Fetch, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bundles/{hash}", g.serveBundle)
	mux.HandleFunc("GET /v1/purges", g.servePurges)
	g.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	g.mesh, err = mesh.Start(mesh.Config{
		Name: n.boot.Name, Bind: c.Bind, Advertise: c.Advertise, Join: c.Join, Key: n.boot.meshKey,
		Meta:     mesh.Meta{Region: n.boot.Region, Provider: n.boot.Provider, FetchURL: g.url},
		Delegate: g, Logger: n.log, Fast: c.FastTimers,
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
	for _, f := range []string{activeFile, previousFile} {
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
	if a.Hash == "" || a.URL == "" || !hashRE.MatchString(a.Hash) {
		return
	}
	if cur := g.n.published.Load(); cur != nil && a.Serial <= cur.Serial {
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
		if !errors.Is(err, errNotNewer) {
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
	g.cancel()
	_ = g.mesh.Leave(time.Second)
	_ = g.mesh.Shutdown()
	_ = g.srv.Close()
	g.wg.Wait()
}
