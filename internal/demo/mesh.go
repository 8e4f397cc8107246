package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rhizome/internal/botauth"
	"rhizome/internal/bots"
	"rhizome/internal/bundle"
	"rhizome/internal/mesh"
	"rhizome/internal/node"
	"rhizome/internal/stages"
)

// Options configure a demo mesh.
type Options struct {
	Nodes  int          // mesh size; default 5
	Rate   int          // synthetic requests per second; default 40, 0 with NoTraffic
	Out    io.Writer    // events, one line each; default io.Discard
	Logger *slog.Logger // the nodes' own logs; default: discarded
	// NoTraffic starts no synthetic traffic.
	NoTraffic bool
}

// Zone is the DNS zone the demo nodes serve; Site is the proxied name clients resolve.
const (
	Zone = "demo.rhizome"
	Site = "shop." + Zone
)

// places are the regions and providers the demo nodes stand for: an operator spreads nodes
// across providers, so that no one provider's outage takes the network.
var places = [][2]string{{"eu-west", "hetzner"}, {"eu-central", "ovh"}, {"us-east", "aws"}, {"us-west", "vultr"}, {"ap-south", "scaleway"}}

// Member is one demo node.
type Member struct {
	Name, Region, Provider string
	IP                     string // its own loopback address: DNS answers name nodes by address
	Node                   *node.Node
	killed                 atomic.Bool
}

// Killed reports whether the demo killed the node.
func (m *Member) Killed() bool { return m.killed.Load() }

// Mesh is a running demo: nodes, origins, a crawler's key directory, traffic.
type Mesh struct {
	opts    Options
	dir     string
	key     ed25519.PrivateKey
	port    int // every node's HTTP port (each on its own loopback address); DNS on port+1
	Members []*Member
	Primary *OriginServer
	Backup  *OriginServer
	crawler *crawlerAgent
	serial  atomic.Uint64
	Traffic *Traffic
	events  *watcher
	start   time.Time
	// poison is the crawler name that makes the demo's bot stage fail (the latent bug of
	// the nov18 scenario); see faultyStage.
	poison string
}

// OriginServer is a sample origin on a loopback socket, standing for one provider.
type OriginServer struct {
	Name   string
	URL    string
	Origin *Origin
	srv    *http.Server
	down   atomic.Bool
}

// Kill stops the origin: its listener and connections close, as when a provider fails.
func (o *OriginServer) Kill() {
	o.down.Store(true)
	o.srv.Close()
}

func startOrigin(name string) (*OriginServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", name, err)
	}
	o := &OriginServer{Name: name, URL: "http://" + ln.Addr().String(), Origin: NewOrigin()}
	o.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Demo-Origin", name)
		o.Origin.ServeHTTP(w, r)
	})}
	go o.srv.Serve(ln)
	return o, nil
}

// crawlerAgent is a well-behaved AI crawler: it publishes its key directory (over TLS, on
// loopback) and signs its requests with Web Bot Auth.
type crawlerAgent struct {
	srv  *httptest.Server
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func startCrawler() (*crawlerAgent, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &crawlerAgent{pub: pub, priv: priv}
	c.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != botauth.WellKnownPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", botauth.DirectoryMediaType)
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	}))
	return c, nil
}

// agent is the crawler's Signature-Agent origin.
func (c *crawlerAgent) agent() string { return c.srv.URL }

// sign signs r as the crawler does.
func (c *crawlerAgent) sign(r *http.Request) error {
	r.Header.Set("Signature-Agent", `"`+c.agent()+`"`)
	now := time.Now()
	p := botauth.Params{Created: now, Expires: now.Add(time.Minute), KeyID: botauth.Thumbprint(c.pub), Alg: "ed25519", Tag: botauth.Tag}
	return botauth.Sign(r, "sig1", []string{"@authority", "signature-agent"}, p, c.priv)
}

// demoResolver is the demo's piece of the internet's DNS, for verifying crawlers by
// reverse and forward lookups: Googlebot's addresses are 66.249.66.0/24.
type demoResolver struct{}

func (demoResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err == nil && netip.MustParsePrefix("66.249.66.0/24").Contains(a) {
		return []string{"crawl-" + strings.ReplaceAll(addr, ".", "-") + ".googlebot.com."}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
}

func (demoResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if rest, ok := strings.CutPrefix(host, "crawl-"); ok {
		if ip, ok := strings.CutSuffix(rest, ".googlebot.com."); ok {
			if a, err := netip.ParseAddr(strings.ReplaceAll(ip, "-", ".")); err == nil {
				return []netip.Addr{a}, nil
			}
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// faultyStage wraps the bot stage with a latent bug: it panics on every request once the
// crawler list carries a given name, as the bot-scoring module of 18 November 2025 failed
// on every request once its feature file changed. The driver recovers it; nothing else in
// rhizome knows it is there.
type faultyStage struct {
	*bots.Stage
	poison string
}

func (f faultyStage) Check(ctx context.Context, r *http.Request, site string) (stages.Verdict, error) {
	for _, c := range f.Crawlers() {
		if c.Name == f.poison {
			panic("bot features: " + f.poison + " overflows the preallocated feature table")
		}
	}
	return f.Stage.Check(ctx, r, site)
}

// Start builds and starts a demo mesh: origins, nodes joined into one mesh, the first
// bundle pushed and rolled out, and traffic. Close stops it all.
func Start(ctx context.Context, o Options) (m *Mesh, err error) {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.Nodes < 1 || o.Nodes > 20 {
		return nil, fmt.Errorf("nodes: %d: want 1..20", o.Nodes)
	}
	if o.Rate == 0 && !o.NoTraffic {
		o.Rate = 40
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	// The events, the scenario and the scorecard write from several goroutines.
	o.Out = &lockedWriter{w: o.Out}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m = &Mesh{opts: o, start: time.Now(), poison: "nov18-feature-overflow"}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	if m.dir, err = os.MkdirTemp("", "rhizome-demo-"); err != nil {
		return nil, err
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return nil, err
	}
	m.key = priv
	if m.Primary, err = startOrigin("primary"); err != nil {
		return nil, err
	}
	if m.Backup, err = startOrigin("backup"); err != nil {
		return nil, err
	}
	if m.crawler, err = startCrawler(); err != nil {
		return nil, err
	}
	if m.port, err = freePort(o.Nodes); err != nil {
		return nil, err
	}
	m.events = newWatcher(m)
	m.printf("starting %d nodes on 127.0.0.11-%d, HTTP port %d, DNS port %d", o.Nodes, 10+o.Nodes, m.port, m.port+1)
	for i := range o.Nodes {
		if err := m.startNode(i, pub); err != nil {
			return nil, err
		}
	}
	if err := m.waitFor(ctx, 20*time.Second, "the mesh to converge", func() bool {
		for _, mb := range m.Members {
			if alive(mb.Node) != len(m.Members) {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}
	m.events.start()
	if _, err := m.Push(0, m.Config(nil)); err != nil {
		return nil, fmt.Errorf("first bundle: %w", err)
	}
	if err := m.waitFor(ctx, 30*time.Second, "bundle 1 on every node", func() bool { return m.Converged(1) }); err != nil {
		return nil, err
	}
	if !o.NoTraffic {
		m.Traffic = startTraffic(m, o.Rate)
		m.printf("synthetic traffic: %d requests/s of people and crawlers, steered by the mesh's DNS", o.Rate)
	}
	m.printf("dashboard: %s", m.DashboardURL(0))
	return m, nil
}

// lockedWriter serialises writes to the demo's output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// freePort finds a TCP port free on every demo address, with the next one free for DNS.
func freePort(n int) (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.11:0")
		if err != nil {
			return 0, fmt.Errorf("loopback address 127.0.0.11: %w", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p > 65000 {
			continue
		}
		ok := true
		for i := range n {
			ip := fmt.Sprintf("127.0.0.%d", 11+i)
			for _, try := range []string{fmt.Sprintf("%s:%d", ip, p), fmt.Sprintf("%s:%d", ip, p+1)} {
				l, err := net.Listen("tcp", try)
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no port free on every demo address")
}

func (m *Mesh) startNode(i int, pub ed25519.PublicKey) error {
	name := fmt.Sprintf("n%d", i+1)
	place := places[i%len(places)]
	ip := fmt.Sprintf("127.0.0.%d", 11+i)
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nregion: %s\nprovider: %s\ndata_dir: %s\n", name, place[0], place[1], filepath.Join(m.dir, name))
	fmt.Fprintf(&b, "listen: %s:%d\nadmin: %s:0\ndns: %s:%d\ndns_rate_limit: -1\naccess_log: false\n", ip, m.port, ip, ip, m.port+1)
	fmt.Fprintf(&b, "cache: {memory: 32MiB, disk: 64MiB}\n")
	fmt.Fprintf(&b, "mesh:\n  bind: %s:0\n  fetch: %s:0\n  fast_timers: true\n  probe_interval: 500ms\n  suspicion_mult: 2\n", ip, ip)
	if i > 0 {
		fmt.Fprintf(&b, "  join: [%s]\n", m.Members[0].Node.MeshAddr())
	}
	fmt.Fprintf(&b, "trust:\n  keys: [%s]\n", bundle.FormatPublicKey(pub))
	boot, err := node.ParseBootstrap([]byte(b.String()))
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	boot.Bots = bots.Options{Resolver: demoResolver{}, DirectoryClient: m.crawler.srv.Client(), AllowPrivate: true}
	boot.WrapStage = func(s stages.Stage) stages.Stage {
		if bs, ok := s.(*bots.Stage); ok {
			return faultyStage{Stage: bs, poison: m.poison}
		}
		return s
	}
	n, err := node.Start(boot, m.opts.Logger.With("node", name))
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	m.Members = append(m.Members, &Member{Name: name, Region: place[0], Provider: place[1], IP: ip, Node: n})
	return nil
}

// alive counts the members n sees alive.
func alive(n *node.Node) int {
	c := 0
	for _, mb := range n.Members() {
		if mb.State == mesh.StateAlive {
			c++
		}
	}
	return c
}

// Config is the demo's bundle source: one site on two pools (two providers), every stage
// on, a managed robots.txt, a rollout in three waves, and the zone that steers clients (it
// answers every healthy node, so that each gets its share of the traffic and judges its
// own health on a new bundle from real requests).
// extra is appended to the site's crawler list.
func (m *Mesh) Config(extra []string) string {
	var b strings.Builder
	b.WriteString("rollout:\n  waves:\n    - {nodes: 1, bake: 5s}\n    - {percent: 60, bake: 2s}\n    - {percent: 100}\n  watch: 20s\n  min_errors: 5\n  max_error_percent: 1\n")
	fmt.Fprintf(&b, `sites:
  - name: shop
    hosts: [%s, "*"]
    pools:
      - name: primary
        origins: [{url: "%s"}]
        health_check: {path: /, interval: 500ms, timeout: 400ms, fall: 2}
      - name: backup
        origins: [{url: "%s"}]
        health_check: {path: /, interval: 500ms, timeout: 400ms, fall: 2}
    retry: {attempts: 2}
    trusted_proxies: [127.0.0.0/8]
    rate_limits:
      - {name: per-client, limit: 200, period: 1s}
    waf: {paranoia: 1}
    bots:
      robots_txt: managed
      content_signals: {search: "yes", ai_input: "yes", ai_train: "no"}
      rules:
        - {crawler: DemoCrawler, verified: true, action: allow}
        - {category: ai-training, action: block}
        - {category: automated, action: block}
crawlers:
  list:
    - {name: DemoCrawler, operator: rhizome demo, category: ai-search, user_agents: [DemoCrawler], signature_agents: ["%s"]}
`, Site, m.Primary.URL, m.Backup.URL, m.crawler.agent())
	for _, e := range extra {
		b.WriteString(e)
	}
	b.WriteString("dns:\n  nodes:\n")
	for _, mb := range m.Members {
		fmt.Fprintf(&b, "    - {name: %s, addresses: [%s]}\n", mb.Name, mb.IP)
	}
	fmt.Fprintf(&b, "  zones:\n    - name: %s\n      ns: [ns1]\n      records: [{name: ns1, type: A, value: %s}]\n      proxied: [{name: shop, ttl: 1s, answers: %d}]\n", Zone, m.Members[0].IP, len(m.Members))
	return b.String()
}

// Push signs src with the next serial (checked like `rhizome bundle sign`) and pushes it to
// member i's admin API, as `rhizome push` does. It returns the serial.
func (m *Mesh) Push(i int, src string) (uint64, error) {
	serial := m.serial.Add(1)
	cfg, err := bundle.ParseSource([]byte(fmt.Sprintf("serial: %d\n%s", serial, src)))
	if err != nil {
		return serial, err
	}
	s, err := bundle.Sign(&bundle.Body{Serial: serial, Created: time.Now().UTC(), Config: cfg}, m.key)
	if err != nil {
		return serial, err
	}
	b, err := s.Encode()
	if err != nil {
		return serial, err
	}
	return serial, m.pushRaw(i, b)
}

// pushRaw hands a signed bundle to member i's admin API.
func (m *Mesh) pushRaw(i int, b []byte) error {
	n := m.Members[i].Node
	req, err := http.NewRequest(http.MethodPost, "http://"+n.Edge.AdminAddr.String()+"/v1/bundle", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.Edge.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s refused it (%d): %s", m.Members[i].Name, resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return nil
}

// Converged reports whether every member still running runs serial.
func (m *Mesh) Converged(serial uint64) bool {
	for _, mb := range m.Members {
		if mb.Killed() {
			continue
		}
		if st := mb.Node.State(); st.Active == nil || st.Active.Serial != serial {
			return false
		}
	}
	return true
}

// Kill stops member i abruptly (no goodbye to the mesh), as a crashed machine would.
func (m *Mesh) Kill(i int) {
	mb := m.Members[i]
	if mb.killed.Swap(true) {
		return
	}
	mb.Node.Kill()
}

// DashboardURL is member i's dashboard, with its admin token in the fragment (which
// browsers never send to the server).
func (m *Mesh) DashboardURL(i int) string {
	n := m.Members[i].Node
	return "http://" + n.Edge.AdminAddr.String() + "/dashboard/#token=" + n.Edge.Token
}

// SiteURL is where member i serves the demo site.
func (m *Mesh) SiteURL(i int) string { return fmt.Sprintf("http://%s:%d/", m.Members[i].IP, m.port) }

// DNSAddr is member i's nameserver.
func (m *Mesh) DNSAddr(i int) string { return fmt.Sprintf("%s:%d", m.Members[i].IP, m.port+1) }

func (m *Mesh) printf(format string, args ...any) {
	fmt.Fprintf(m.opts.Out, "[%6.1fs] %s\n", time.Since(m.start).Seconds(), fmt.Sprintf(format, args...))
}

// waitFor polls cond until it holds, ctx ends or within passes.
func (m *Mesh) waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", within, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Close stops the traffic, the nodes and the origins, and removes every file the demo
// wrote. Safe to call more than once.
func (m *Mesh) Close() {
	if m.Traffic != nil {
		m.Traffic.Stop()
	}
	if m.events != nil {
		m.events.stop()
	}
	var wg sync.WaitGroup
	for _, mb := range m.Members {
		if !mb.Killed() {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				mb.Node.Shutdown(ctx)
			})
		}
	}
	wg.Wait()
	for _, o := range []*OriginServer{m.Primary, m.Backup} {
		if o != nil {
			o.srv.Close()
		}
	}
	if m.crawler != nil {
		m.crawler.srv.Close()
	}
	if m.dir != "" {
		os.RemoveAll(m.dir)
	}
}
