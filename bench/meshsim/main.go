// Command meshsim measures the mesh on one machine: it starts N rhizome nodes in-process
// (each with its own data dir, proxy, admin, gossip and fetch sockets on loopback), pushes a
// signed bundle to one of them, and reports how long every node took to activate it (p50,
// p99, max). Then it stops one node without a goodbye and reports how long the others take
// to declare it dead. Run: go run ./bench/meshsim -n 50
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/node"
)

func main() {
	n := flag.Int("n", 5, "nodes")
	fast := flag.Bool("fast", true, "memberlist's local-network timers (probe 200ms, gossip 50ms, push/pull 1s); false: LAN defaults")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up waiting after this long")
	flag.Parse()
	if err := run(*n, *fast, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "meshsim:", err)
		os.Exit(1)
	}
}

func freePort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			u.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

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
		gp, err := freePort()
		if err != nil {
			return err
		}
		fp, err := freePort()
		if err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "name: n%03d\ndata_dir: %s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: false\n", i, filepath.Join(dir, fmt.Sprint(i)))
		fmt.Fprintf(&b, "cache: {memory: 4MiB, disk: 16MiB}\nmesh:\n  bind: 127.0.0.1:%d\n  fetch: 127.0.0.1:%d\n  fast_timers: %v\n", gp, fp, fast)
		if i > 0 {
			fmt.Fprintf(&b, "  join: [%s]\n", seed)
		} else {
			seed = fmt.Sprintf("127.0.0.1:%d", gp)
		}
		fmt.Fprintf(&b, "trust:\n  keys: [%s]\n", bundle.FormatPublicKey(pub))
		boot, err := node.ParseBootstrap([]byte(b.String()))
		if err != nil {
			return err
		}
		if nodes[i], err = node.Start(boot, quiet); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
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

	b, err := signedBundle(priv)
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
				if st := nd.State(); st.Active != nil && st.Active.Serial == 1 {
					times[i] = st.Active.Activated.Sub(pushedAt)
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
	return nil
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

func signedBundle(priv ed25519.PrivateKey) ([]byte, error) {
	// No origin is contacted: each node's self-test simulates one.
	cfg, err := bundle.ParseSource([]byte("serial: 1\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: \"http://127.0.0.1:9\"}]\n"))
	if err != nil {
		return nil, err
	}
	s, err := bundle.Sign(&bundle.Body{Serial: 1, Created: time.Now().UTC(), Config: cfg}, priv)
	if err != nil {
		return nil, err
	}
	return s.Encode()
}
