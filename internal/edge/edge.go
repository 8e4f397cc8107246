// Package edge assembles one node's servers: the data-plane listener (HTTP/1.1 and h2c) in
// front of the proxy, the cache store in the data dir, and the admin API. The CLI, the demo
// and tests start nodes through it, so all three run the same wiring.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"rhizome/internal/admin"
	"rhizome/internal/cache"
	"rhizome/internal/dashboard"
	"rhizome/internal/metrics"
	"rhizome/internal/proxy"
	"rhizome/internal/snapshot"
	"rhizome/internal/stages"
)

// Options configure a node. Zero values take the documented defaults.
type Options struct {
	Listen string // data plane address; default "127.0.0.1:8080"; port 0 picks one
	// Name identifies this node in Via and Cache-Status (and so detects a request that loops
	// back to it); default "rhizome".
	Name        string
	AdminListen string // admin API address; default "127.0.0.1:9090"; "off" disables it
	// DataDir keeps the disk cache tier and the admin token across restarts. Empty: a private
	// temporary directory is used for the disk tier (large objects still stream through
	// disk, not memory) and removed at shutdown.
	DataDir     string
	CacheMemory int64 // memory tier bound in bytes; default 256 MiB
	CacheDisk   int64 // disk tier bound in bytes; default 1 GiB
	NoCache     bool  // run without any cache store
	AdminToken  string
	// Admin adds routes to the admin API (a mesh node's bundle push); nil for none.
	Admin     func(*admin.Server)
	AccessLog bool
	Logger    *slog.Logger
	Transport proxy.TransportOptions
	// Stages run before the cache (nil: none).
	Stages *stages.Driver
	// RobotsTxt gives a site's managed robots.txt section (proxy.Config.RobotsTxt).
	RobotsTxt func(site string) []byte
}

// Node is a running node.
type Node struct {
	Proxy     *proxy.Handler
	Store     *cache.Store
	Addr      net.Addr // data plane
	AdminAddr net.Addr // nil when the admin API is off
	Token     string

	log     *slog.Logger
	servers []*http.Server
	tempDir string
	errc    chan error
	name    string         // shown in Cache-Status and Via, and in /metrics
	stages  *stages.Driver // nil: none
}

// Start compiles spec, opens the cache and starts serving. It returns once the listeners are
// bound, so callers can read the chosen ports.
func Start(spec snapshot.Spec, o Options) (*Node, error) {
	snap, err := snapshot.Compile(spec)
	if err != nil {
		return nil, err
	}
	return StartSnapshot(snap, o)
}

// StartSnapshot is Start for an already compiled snapshot (a mesh node's last-known-good,
// or an empty one while it has none).
func StartSnapshot(snap *snapshot.Snapshot, o Options) (*Node, error) {
	var err error
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.AdminListen == "" {
		o.AdminListen = "127.0.0.1:9090"
	}
	n := &Node{log: log, errc: make(chan error, 2), name: o.Name, stages: o.Stages}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()

	if !o.NoCache {
		dir := o.DataDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "rhizome-cache-"); err != nil {
				return nil, fmt.Errorf("cache: %w", err)
			}
			n.tempDir = dir
		}
		n.Store, err = cache.Open(cache.Config{
			Dir:         filepath.Join(dir, "cache"),
			MemoryBytes: o.CacheMemory,
			DiskBytes:   o.CacheDisk,
			Logger:      log,
		})
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	n.Proxy = proxy.New(snap, proxy.Config{
		Store:     n.Store,
		Transport: proxy.NewTransport(o.Transport),
		Logger:    log,
		AccessLog: o.AccessLog,
		Name:      o.Name,
		Stages:    o.Stages,
		RobotsTxt: o.RobotsTxt,
	})

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	n.Addr = ln.Addr()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as nginx's "http2 on" without TLS
	n.serve(&http.Server{
		Handler:           n.Proxy,
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,  // slowloris guard
		IdleTimeout:       120 * time.Second, // keep-alive connections from clients
		MaxHeaderBytes:    64 << 10,          // larger headers get 431
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}, ln)

	if o.AdminListen != "off" {
		n.Token = o.AdminToken
		if n.Token == "" {
			if o.DataDir != "" {
				if n.Token, err = admin.LoadOrCreateToken(o.DataDir); err != nil {
					return nil, err
				}
			} else {
				n.Token = admin.NewToken()
			}
		}
		aln, err := net.Listen("tcp", o.AdminListen)
		if err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", o.AdminListen, err)
		}
		n.AdminAddr = aln.Addr()
		a := &admin.Server{Store: n.Store, Snapshot: n.Proxy.Snapshot, Upstreams: n.Proxy.Upstreams, Token: n.Token, Logger: log, Started: time.Now(),
			Traffic: func() any { return n.Proxy.Health() }, Dashboard: dashboard.Handler()}
		// A standalone proxy's metrics: the data plane alone (a mesh node replaces them
		// with its own, which add the bundle, the mesh and the stages).
		a.Metrics = metrics.Handler(n.MetricsSnapshot)
		if o.Admin != nil {
			o.Admin(a)
		}
		n.serve(&http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}, aln)
	}
	ok = true
	return n, nil
}

func (n *Node) serve(srv *http.Server, ln net.Listener) {
	n.servers = append(n.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
	}()
}

// MetricsSnapshot is the data plane's part of a /metrics scrape: traffic, origins, cache
// and stages. A standalone proxy serves it as is; a mesh node adds its bundle, mesh and
// stage details to it.
func (n *Node) MetricsSnapshot() metrics.Snapshot {
	s := metrics.Snapshot{Node: n.name, Traffic: n.Proxy.Health(), Upstreams: n.Proxy.Upstreams()}
	if n.Store != nil {
		cs := n.Store.Stats()
		s.Cache = &cs
	}
	if n.stages != nil {
		s.Stages = n.stages.Stats()
	}
	return s
}

// Err reports a listener that stopped on its own.
func (n *Node) Err() <-chan error { return n.errc }

// Shutdown stops accepting, lets requests in flight finish until ctx ends, then closes the
// cache. Everything the cache committed is already on disk.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range n.servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = s.Close()
		}
	}
	errs = append(errs, n.close())
	return errors.Join(errs...)
}

func (n *Node) close() error {
	var err error
	if n.Proxy != nil {
		n.Proxy.Close() // health checks
	}
	if n.Store != nil {
		err = n.Store.Close()
	}
	if n.tempDir != "" {
		_ = os.RemoveAll(n.tempDir)
	}
	return err
}
