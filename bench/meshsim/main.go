// Command meshsim measures the mesh on one machine: it starts N rhizome nodes in-process
// (each with its own data dir, proxy, admin, gossip and fetch sockets on loopback), pushes a
// signed bundle to one of them, and reports how long every node took to activate it (p50,
// p99, max). Then it stops one node without a goodbye and reports how long the others take
// to declare it dead and to drop it from their DNS answers. Then (with -blast) it pushes a bad bundle with waves (1 node, 10%, 50%,
// 100%) that breaks every node that runs it, and reports how many nodes ever ran it and how
// long the canary took to return to the last good bundle. Run: go run ./bench/meshsim -n 50
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"rhizome/internal/bundle"
	"rhizome/internal/node"
	"rhizome/internal/rollout"
)

func main() {
	n := flag.Int("n", 5, "nodes")
	fast := flag.Bool("fast", true, "memberlist's local-network timers (probe 200ms, gossip 50ms, push/pull 1s); false: LAN defaults")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up waiting after this long")
	flag.BoolVar(&blast, "blast", true, "measure the blast radius of a bad bundle")
	flag.StringVar(&probe, "probe", "", "mesh.probe_interval of every node (e.g. 500ms); empty: the timers' default")
	flag.IntVar(&suspicion, "suspicion", 0, "mesh.suspicion_mult of every node; 0: the timers' default")
	flag.DurationVar(&bake, "bake", 10*time.Second, "bake time of each wave of the bad bundle")
	flag.DurationVar(&failAfter, "fail-after", 2*time.Second, "a node on the bad bundle starts failing this long after activating it")
	flag.Parse()
	if err := run(*n, *fast, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "meshsim:", err)
		os.Exit(1)
	}
}

var (
	probe     string
	suspicion int
	blast     bool
	bake      time.Duration
	failAfter time.Duration
)

func run(size int, fast bool, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "meshsim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nodes := make([]*node.Node, size)
	var seed string
	start := time.Now()
	for i := range size {
		var b strings.Builder
		fmt.Fprintf(&b, "name: n%03d\ndata_dir: %s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: false\n", i, filepath.Join(dir, fmt.Sprint(i)))
		// Every node answers DNS; the last one (the one killed at the end) is alone in the
		// region of 127.0.0.0/8, so every answer to a query from here names it while it
		// qualifies.
		region := "r"
		if i == size-1 {
			region = "victim"
		}
		fmt.Fprintf(&b, "region: %s\ndns: 127.0.0.1:0\ndns_rate_limit: -1\n", region)
		var tune string
		if probe != "" {
			tune += fmt.Sprintf("  probe_interval: %s\n", probe)
		}
		if suspicion > 0 {
			tune += fmt.Sprintf("  suspicion_mult: %d\n", suspicion)
		}
		fmt.Fprintf(&b, "cache: {memory: 4MiB, disk: 16MiB}\nmesh:\n  bind: 127.0.0.1:0\n  fetch: 127.0.0.1:0\n  fast_timers: %v\n%s", fast, tune)
		if i > 0 {
			fmt.Fprintf(&b, "  join: [%s]\n", seed)
		}
		fmt.Fprintf(&b, "trust:\n  keys: [%s]\n", bundle.FormatPublicKey(pub))
		boot, err := node.ParseBootstrap([]byte(b.String()))
		if err != nil {
			return err
		}
		if nodes[i], err = node.Start(boot, quiet); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if i == 0 {
			seed = nodes[0].MeshAddr()
		}
	}
	defer func() {
		var wg sync.WaitGroup
		for _, nd := range nodes {
			if nd != nil {
				wg.Go(func() { nd.Shutdown(context.Background()) })
			}
		}
		wg.Wait()
	}()
	if err := waitUntil(timeout, func() bool {
		for _, nd := range nodes {
			if alive(nd) != size {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("membership did not converge: %w", err)
	}
	fmt.Printf("%d nodes started and converged in %v (fast timers: %v)\n", size, time.Since(start).Round(time.Millisecond), fast)

	var zone strings.Builder
	zone.WriteString("dns:\n  nodes:\n")
	for i := range size {
		fmt.Fprintf(&zone, "    - {name: n%03d, addresses: [%s]}\n", i, nodeAddr(i))
	}
	zone.WriteString("  regions:\n    - {name: victim, prefixes: [127.0.0.0/8]}\n  zones:\n    - name: sim.test\n      ns: [ns1]\n      records: [{name: ns1, type: A, value: 192.0.2.53}]\n      proxied: [{name: www, answers: 2}]\n")
	b, err := signedBundle(priv, 1, zone.String())
	if err != nil {
		return err
	}
	pushedAt := time.Now()
	if _, err := nodes[0].Apply(b); err != nil {
		return err
	}
	times := make([]time.Duration, size)
	if err := waitUntil(timeout, func() bool {
		done := 0
		for i, nd := range nodes {
			if times[i] == 0 {
				if a := nd.Active(); a != nil && a.Serial == 1 {
					times[i] = a.Activated.Sub(pushedAt)
				}
			}
			if times[i] != 0 {
				done++
			}
		}
		return done == size
	}); err != nil {
		return fmt.Errorf("bundle did not reach every node: %w", err)
	}
	slices.Sort(times)
	fmt.Printf("push to active: p50 %v, p99 %v, max %v over %d nodes\n",
		pct(times, 50), pct(times, 99), times[len(times)-1].Round(time.Millisecond), size)

	if blast {
		if err := blastRadius(nodes, priv, timeout); err != nil {
			return err
		}
	}

	// Before the kill, every node's answers name the node about to die (the only node of
	// the querier's region), or the DNS figure below would prove nothing.
	if err := waitUntil(timeout, func() bool {
		for _, nd := range nodes[:size-1] {
			if !slices.Contains(queryA(nd.DNSAddr(), "www.sim.test."), nodeAddr(size-1)) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("the node to kill is not in every DNS answer: %w", err)
	}

	// Detection: the last node stops without leaving (as kill -9 would: no goodbye).
	victim := nodes[size-1]
	name := victim.State().Node
	nodes[size-1] = nil
	killedAt := time.Now()
	victim.Kill()
	if err := waitUntil(timeout, func() bool {
		for _, nd := range nodes[:size-1] {
			for _, m := range nd.Members() {
				if m.Name == name && m.State == "alive" {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("dead node not detected: %w", err)
	}
	fmt.Printf("dead node out of every member list in %v\n", time.Since(killedAt).Round(time.Millisecond))
	gone := nodeAddr(size - 1)
	if err := waitUntil(timeout, func() bool {
		for _, nd := range nodes[:size-1] {
			if slices.Contains(queryA(nd.DNSAddr(), "www.sim.test."), gone) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("dead node still in DNS answers: %w", err)
	}
	fmt.Printf("dead node out of every node's DNS answers in %v\n", time.Since(killedAt).Round(time.Millisecond))
	return nil
}

// nodeAddr is the public address the DNS section gives node i.
func nodeAddr(i int) string { return fmt.Sprintf("10.1.%d.%d", i/250, i%250+1) }

// queryA asks a node's DNS server for name's A records.
func queryA(addr, name string) []string {
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, addr)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func alive(nd *node.Node) int {
	c := 0
	for _, m := range nd.Members() {
		if m.State == "alive" {
			c++
		}
	}
	return c
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(i, len(sorted))-1)].Round(time.Millisecond)
}

func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func signedBundle(priv ed25519.PrivateKey, serial uint64, extra string) ([]byte, error) {
	// No origin is contacted: each node's self-test simulates one.
	cfg, err := bundle.ParseSource(fmt.Appendf(nil, "serial: %d\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: \"http://127.0.0.1:9\"}]\n%s", serial, extra))
	if err != nil {
		return nil, err
	}
	s, err := bundle.Sign(&bundle.Body{Serial: serial, Created: time.Now().UTC(), Config: cfg}, priv)
	if err != nil {
		return nil, err
	}
	return s.Encode()
}

// blastRadius pushes serial 2, a bundle that breaks every node that runs it (each starts
// failing failAfter after activating it: node errors on half its requests), with the waves
// 1 node, 10%, 50%, 100%. It reports how many nodes ever ran it, and when the canary was
// back on serial 1 relative to its activation (goal: within its bake time plus 10 s).
func blastRadius(nodes []*node.Node, priv ed25519.PrivateKey, timeout time.Duration) error {
	plan := fmt.Sprintf("rollout:\n  waves:\n    - {nodes: 1, bake: %s}\n    - {percent: 10, bake: %s}\n    - {percent: 50, bake: %s}\n    - {percent: 100}\n", bake, bake, bake)
	b, err := signedBundle(priv, 2, plan)
	if err != nil {
		return err
	}
	pushedAt := time.Now()
	info, err := nodes[len(nodes)/2].Apply(b)
	if err != nil {
		return err
	}
	hash := info.Hash
	activated := map[int]time.Time{} // nodes that ever ran serial 2
	injected := map[int]bool{}
	back := map[int]time.Duration{} // from activation to back on serial 1
	// Watch for three bake times: without the safety net the second wave would have
	// started after one.
	end := pushedAt.Add(3*bake + 10*time.Second)
	var allKnew time.Duration // from the push until every node knew the bundle was halted
	for time.Now().Before(end) {
		if allKnew == 0 && len(activated) > 0 {
			all := true
			for _, nd := range nodes {
				if nd != nil && !nd.Stopped(hash).Rollback {
					all = false
					break
				}
			}
			if all {
				allKnew = time.Since(pushedAt)
			}
		}
		for i, nd := range nodes {
			if nd == nil {
				continue
			}
			serial := uint64(0)
			if a := nd.Active(); a != nil {
				serial = a.Serial
			}
			if serial == 2 {
				if _, ok := activated[i]; !ok {
					activated[i] = time.Now()
				}
				if !injected[i] && time.Since(activated[i]) >= failAfter {
					nd.InjectFaults(rollout.Counters{Requests: 100, NodeErrors: 50})
					injected[i] = true
				}
			} else if at, ok := activated[i]; ok && back[i] == 0 {
				back[i] = time.Since(at)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("bad bundle (waves 1 node, 10%%, 50%%, 100%%; bake %v; nodes fail %v after activating it): ran on %d of %d nodes\n",
		bake, failAfter, len(activated), len(nodes))
	for i, at := range activated {
		if back[i] == 0 {
			return fmt.Errorf("node %d still runs the bad bundle %v after activating it", i, time.Since(at).Round(time.Millisecond))
		}
		fmt.Printf("  node n%03d activated it %v after the push, back on the last good bundle %v later (goal: bake %v + 10s)\n",
			i, at.Sub(pushedAt).Round(time.Millisecond), back[i].Round(time.Millisecond), bake)
	}
	if allKnew == 0 {
		return fmt.Errorf("not every node learnt of the halt within %v of the push", 3*bake+10*time.Second)
	}
	fmt.Printf("every node knew the bundle was halted %v after the push\n", allKnew.Round(time.Millisecond))
	return nil
}
