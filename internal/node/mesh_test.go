package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil { // memberlist needs the same port free for UDP too
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// meshBootstrap is a node of a local test mesh with fast timers.
func meshBootstrap(t *testing.T, name string, join []string, keys ...keypair) (*Bootstrap, string) {
	t.Helper()
	// Port 0: memberlist binds a free port itself (read back from the running node), so
	// that packages testing in parallel cannot take it between a probe and the bind.
	gossipAddr := "127.0.0.1:0"
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nregion: r-%s\ndata_dir: %s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: false\n", name, name, t.TempDir())
	fmt.Fprintf(&b, "mesh:\n  bind: %s\n  fetch: 127.0.0.1:%d\n  fast_timers: true\n  key: %s\n", gossipAddr, freePort(t), "c2VjcmV0LWtleS1vZi0xNi1ieXRlcyEhISEhISEhISE=")
	if len(join) > 0 {
		fmt.Fprintf(&b, "  join: [%s]\n", strings.Join(join, ", "))
	}
	b.WriteString("trust:\n  keys:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "    - %s\n", formatPub(k))
	}
	boot, err := ParseBootstrap([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return boot, gossipAddr
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func activeSerial(n *Node) uint64 {
	if st := n.State(); st.Active != nil {
		return st.Active.Serial
	}
	return 0
}

// TestMeshSpreadsBundles: a bundle pushed to one node reaches every node of the mesh; a
// bad bundle pushed there reaches none; a node that was away catches up when it returns.
func TestMeshSpreadsBundles(t *testing.T) {
	op, stranger := newKey(t), newKey(t)
	const size = 5
	nodes := startMesh(t, size, op)

	o := origin(t, "v1")
	if code, out := push(t, nodes[0], signed(t, source(1, o), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	took := waitFor(t, "serial 1 on every node", 10*time.Second, func() bool {
		for _, n := range nodes {
			if activeSerial(n) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("push to active on all %d nodes: %v", size, took)
	for _, n := range nodes {
		if code, body := get(t, n, "/"); code != 200 || body != "v1" {
			t.Fatalf("%s serves %d %q", n.boot.Name, code, body)
		}
	}

	// A bundle signed by a key the nodes do not trust is refused where it is pushed, and
	// never announced.
	if code, _ := push(t, nodes[0], signed(t, source(2, o), stranger)); code == 200 {
		t.Fatal("untrusted bundle accepted")
	}
	time.Sleep(time.Second) // long enough for gossip to have carried it, had it been announced
	for _, n := range nodes {
		if activeSerial(n) != 1 {
			t.Fatalf("%s runs serial %d after a refused push", n.boot.Name, activeSerial(n))
		}
	}

	// A node that was down while serial 3 spread catches up when it comes back, through
	// the push/pull digest (the broadcast is long gone).
	away := nodes[size-1]
	awayBoot := away.boot
	stop(t, away)
	if code, out := push(t, nodes[1], signed(t, source(3, origin(t, "v3")), op)); code != 200 {
		t.Fatalf("push serial 3: %s", out)
	}
	waitFor(t, "serial 3 on the nodes that are up", 10*time.Second, func() bool {
		for _, n := range nodes[:size-1] {
			if activeSerial(n) != 3 {
				return false
			}
		}
		return true
	})
	back := start(t, awayBoot)
	defer stop(t, back)
	nodes[size-1] = back
	if activeSerial(back) != 1 {
		t.Fatalf("restarted node should start from its last-known-good (1), runs %d", activeSerial(back))
	}
	took = waitFor(t, "the returning node to catch up", 15*time.Second, func() bool { return activeSerial(back) == 3 })
	t.Logf("catch-up after rejoin: %v", took)
}

// getHost fetches path from n with a fixed Host, so that every node keys it the same way.
func getHost(t *testing.T, n *Node, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.Edge.Addr.String()+path, nil)
	req.Host = "shop.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("Cache-Status")
}

func purgeVia(t *testing.T, n *Node, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.Edge.AdminAddr.String()+"/v1/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+n.Edge.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("purge: %s", resp.Status)
	}
}

// TestMeshPurge: one purge on one node empties every node's copy; a node that was down
// when it happened applies it when it comes back, though the object is still on its disk.
func TestMeshPurge(t *testing.T) {
	op := newKey(t)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, r.URL.Path)
	}))
	defer o.Close()
	nodes := startMesh(t, 3, op)
	push(t, nodes[0], signed(t, source(1, o.URL), op))
	waitFor(t, "the bundle everywhere", 10*time.Second, func() bool {
		for _, n := range nodes {
			if activeSerial(n) != 1 {
				return false
			}
		}
		return true
	})
	stored := func(n *Node, path string) bool { _, ok := n.Edge.Store.Get("http://shop.example" + path); return ok }
	for _, path := range []string{"/x", "/y"} {
		for _, n := range nodes {
			getHost(t, n, path)
			waitFor(t, "stored", 5*time.Second, func() bool { return stored(n, path) })
		}
	}

	purgeVia(t, nodes[0], `{"urls":["http://shop.example/x"]}`)
	took := waitFor(t, "/x purged on every node", 10*time.Second, func() bool {
		for _, n := range nodes {
			if stored(n, "/x") {
				return false
			}
		}
		return true
	})
	t.Logf("purge on every node in %v", took)

	// p2 is down when /y is purged; its disk still holds /y when it returns.
	away := nodes[2]
	awayBoot := away.boot
	stop(t, away)
	purgeVia(t, nodes[0], `{"prefixes":["http://shop.example/y"]}`)
	waitFor(t, "/y purged on the live nodes", 10*time.Second, func() bool { return !stored(nodes[0], "/y") && !stored(nodes[1], "/y") })
	back := start(t, awayBoot)
	defer stop(t, back)
	took = waitFor(t, "the returning node to apply the purge it missed", 15*time.Second, func() bool { return !stored(back, "/y") })
	t.Logf("missed purge applied %v after restart", took)
}
