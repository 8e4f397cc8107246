package node

import (
	"context"
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
	"rhizome/internal/bundle"
	"rhizome/internal/edge"
	"rhizome/internal/mesh"
	"rhizome/internal/proxy"
	"rhizome/internal/snapshot"
	"rhizome/internal/upstream"
)

// Files in DataDir/bundles. The active bundle is the last-known-good: a node restarted with
// no peers and no network serves from it.
const (
	bundleDir    = "bundles"
	activeFile   = "active.bundle"
	previousFile = "previous.bundle"
	maxRefusals  = 20
)

// BundleInfo describes a bundle a node runs or ran.
type BundleInfo struct {
	Serial    uint64    `json:"serial"`
	Hash      string    `json:"hash"`
	Parent    string    `json:"parent,omitempty"`
	Created   time.Time `json:"created"`
	Signers   []string  `json:"signers"`
	Activated time.Time `json:"activated"`
	Sites     int       `json:"sites"`
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
	Node     string        `json:"node"`
	Region   string        `json:"region,omitempty"`
	Provider string        `json:"provider,omitempty"`
	Active   *BundleInfo   `json:"active"`
	Previous *BundleInfo   `json:"previous,omitempty"`
	Refused  []Refusal     `json:"refused,omitempty"`
	Trust    TrustSummary  `json:"trust"`
	Members  []mesh.Member `json:"members,omitempty"`
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

	gossip    *gossip                           // nil for a standalone node
	published atomic.Pointer[mesh.Announcement] // what this node runs, for the mesh; read without n.mu

	stopOnce sync.Once
	stopErr  error

	mu                 sync.Mutex // serialises Apply
	active             *BundleInfo
	activeFromPrevious bool // loaded from previous.bundle at start (active.bundle was unusable)
	previous           *BundleInfo
	refused            []Refusal
}

// Start opens the data dir, loads the last-known-good bundle (falling back to the previous
// one, then to no sites, logging why), and starts serving.
func Start(boot *Bootstrap, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	n := &Node{boot: boot, log: log.With("node", boot.Name)}
	if err := os.MkdirAll(filepath.Join(boot.DataDir, bundleDir), 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	snap := snapshot.Empty("none")
	for _, f := range []string{activeFile, previousFile} {
		s, info, err := n.load(filepath.Join(boot.DataDir, bundleDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			n.log.Error("stored bundle refused at start", "file", f, "err", err)
			n.refuse(nil, err)
			continue
		}
		snap, n.active = s, info
		n.activeFromPrevious = f == previousFile
		n.log.Info("serving last-known-good bundle", "file", f, "serial", info.Serial, "hash", info.Hash)
		break
	}
	if n.active == nil {
		n.log.Warn("no bundle yet: every request gets 421 until one is pushed (rhizome push)")
	}
	accessLog := boot.AccessLog == nil || *boot.AccessLog
	e, err := edge.StartSnapshot(snap, edge.Options{
		Listen: boot.Listen, AdminListen: boot.Admin, DataDir: boot.DataDir,
		CacheMemory: boot.memory, CacheDisk: boot.dsk, AccessLog: accessLog, Logger: n.log,
		Admin: func(a *admin.Server) {
			a.Apply = func(b []byte) (any, error) { return n.Apply(b) }
			a.Bundle = func() any { return n.State() }
			a.Purged = func(req admin.PurgeRequest) {
				if n.gossip != nil {
					n.gossip.broadcastPurge(req)
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	n.Edge = e
	if boot.Mesh != nil {
		n.publish()
		if n.gossip, err = startGossip(n, boot.Mesh); err != nil {
			_ = e.Shutdown(context.Background())
			return nil, err
		}
		if a := n.published.Load(); a != nil && a.Hash != "" {
			n.gossip.announce(*a)
		}
	}
	return n, nil
}

// publish makes the active bundle what Digest reports. Called with n.mu held or before
// the node is shared.
func (n *Node) publish() {
	a := &mesh.Announcement{From: n.boot.Name}
	if n.active != nil {
		a.Serial, a.Hash = n.active.Serial, n.active.Hash
	}
	if n.boot.Mesh != nil {
		a.URL = n.boot.Mesh.FetchURL
	}
	n.published.Store(a)
}

// Members lists the mesh as this node sees it (nil for a standalone node).
func (n *Node) Members() []mesh.Member {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.mesh.Members()
}

// errNotNewer marks a bundle refused only because the node already runs one as new.
var errNotNewer = errors.New("not above the active serial")

// load reads, verifies and compiles a stored bundle.
func (n *Node) load(path string) (*snapshot.Snapshot, *BundleInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	s, body, snap, err := n.check(b)
	if err != nil {
		return nil, nil, err
	}
	st, _ := os.Stat(path)
	return snap, info(s, body, snap, n.boot.trust, st.ModTime()), nil
}

// check runs every step a bundle must pass before it may serve: decode, signatures,
// validation, compilation, self-test.
func (n *Node) check(b []byte) (*bundle.Signed, *bundle.Body, *snapshot.Snapshot, error) {
	s, err := bundle.Decode(b)
	if err != nil {
		return nil, nil, nil, err
	}
	body, err := bundle.Verify(s, n.boot.trust)
	if err != nil {
		return s, nil, nil, err
	}
	snap, err := snapshot.Compile(body.Config.Spec(strconv.FormatUint(body.Serial, 10)))
	if err != nil {
		return s, body, nil, fmt.Errorf("%w: %w", bundle.ErrInvalid, err)
	}
	if err := SelfTest(snap); err != nil {
		return s, body, nil, fmt.Errorf("self-test: %w", err)
	}
	return s, body, snap, nil
}

// Apply activates a pushed bundle, or refuses it with the reason and keeps serving what it
// had. Safe for concurrent use; applies are serialised.
func (n *Node) Apply(b []byte) (*BundleInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, body, snap, err := n.check(b)
	if err == nil && n.active != nil && body.Serial <= n.active.Serial {
		err = fmt.Errorf("serial %d is not above the active %d: older or replayed bundles are refused (a rollback is a new bundle with a higher serial): %w", body.Serial, n.active.Serial, errNotNewer)
	}
	if err != nil {
		n.refuse(s, err)
		return nil, err
	}
	dir := filepath.Join(n.boot.DataDir, bundleDir)
	if err := writeAtomic(filepath.Join(dir, "next.bundle"), b); err != nil {
		n.refuse(s, err)
		return nil, err
	}
	// The bundle being replaced becomes the previous one, unless it was itself served
	// from previous.bundle (active.bundle was damaged): then the damaged file must not
	// overwrite the good one.
	if n.active != nil && !n.activeFromPrevious {
		if err := os.Rename(filepath.Join(dir, activeFile), filepath.Join(dir, previousFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Warn("keeping the previous bundle failed", "err", err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "next.bundle"), filepath.Join(dir, activeFile)); err != nil {
		n.refuse(s, err)
		return nil, fmt.Errorf("persist: %w", err)
	}
	n.Edge.Proxy.Swap(snap)
	n.activeFromPrevious = false
	n.previous, n.active = n.active, info(s, body, snap, n.boot.trust, time.Now())
	n.publish()
	n.log.Info("bundle activated", "serial", body.Serial, "hash", n.active.Hash, "signers", n.active.Signers)
	if n.gossip != nil {
		n.gossip.announce(*n.published.Load())
	}
	return n.active, nil
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
		Refused: append([]Refusal(nil), n.refused...), Trust: TrustSummary{Required: n.boot.trust.Required}}
	for id := range n.boot.trust.Keys {
		st.Trust.Keys = append(st.Trust.Keys, id)
	}
	st.Members = n.Members()
	return st
}

// Kill stops the node abruptly, as kill -9 would: no goodbye to the mesh, so the others
// must detect the failure. For simulations and tests.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		if n.gossip != nil {
			n.gossip.cancel()
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
		if n.gossip != nil {
			n.gossip.stop()
		}
		n.stopErr = n.Edge.Shutdown(ctx)
	})
	return n.stopErr
}

func info(s *bundle.Signed, body *bundle.Body, snap *snapshot.Snapshot, trust bundle.Trust, at time.Time) *BundleInfo {
	return &BundleInfo{Serial: body.Serial, Hash: s.Hash(), Parent: body.Parent, Created: body.Created,
		Activated: at.UTC(), Sites: len(snap.Sites()), Signers: bundle.ValidSigners(s, trust)}
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
	stub := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Cache-Control": {"no-store"}}, Body: io.NopCloser(strings.NewReader("self-test")), ContentLength: 9, Request: r}, nil
	})
	reg := upstream.NewRegistry(upstream.RegistryOptions{Transport: stub, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer reg.Close()
	h := proxy.New(snap, proxy.Config{Transport: stub, Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, site := range snap.Sites() {
		host := site.Hosts[0]
		switch {
		case host == "*":
			host = "self-test.invalid"
		case strings.HasPrefix(host, "*."):
			host = "self-test" + host[1:]
		}
		code, perr := serveOnce(h, host)
		if perr != nil {
			return fmt.Errorf("site %s: the request path panicked: %v", site.Name, perr)
		}
		if code != http.StatusOK {
			return fmt.Errorf("site %s: a request for %s got %d from a healthy simulated origin", site.Name, host, code)
		}
	}
	return nil
}

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
