package mesh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// recorder is a test Delegate: it returns a settable digest and records
// everything heard.
type recorder struct {
	mu     sync.Mutex
	digest Announcement
	heard  []Announcement
}

func (r *recorder) Digest() Announcement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.digest
}

func (r *recorder) Heard(a Announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.heard = append(r.heard, a)
}

func (r *recorder) setDigest(a Announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.digest = a
}

func (r *recorder) has(a Announcement) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.heard {
		if h == a {
			return true
		}
	}
	return false
}

// testLogger discards logs unless MESH_TEST_LOG is set. It never uses t.Log:
// memberlist goroutines may still log briefly after Shutdown returns.
func testLogger() *slog.Logger {
	if os.Getenv("MESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// hashOf returns a hex SHA-256 for test announcements.
func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// eventually polls cond every 20ms until it returns nil or timeout passes,
// then fails the test with cond's last error. It returns the time waited.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// node is a started Mesh with its recorder.
type node struct {
	*Mesh
	rec *recorder
}

// startNode starts a Fast node on a free loopback port; edit adjusts the
// config first. The node is shut down when the test ends.
func startNode(t testing.TB, name string, edit func(*Config)) node {
	t.Helper()
	rec := &recorder{}
	c := Config{
		Name:     name,
		Bind:     "127.0.0.1:0",
		Meta:     Meta{Region: "test-" + name, Provider: "loopback", FetchURL: "http://" + name + ".invalid/bundles/"},
		Delegate: rec,
		Logger:   testLogger(),
		Fast:     true,
	}
	if edit != nil {
		edit(&c)
	}
	m, err := Start(c)
	if err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return node{m, rec}
}

// startCluster starts n Fast nodes, each joining the previous one (a chain),
// and waits until every node sees n alive members.
func startCluster(t testing.TB, n int, edit func(*Config)) []node {
	t.Helper()
	nodes := make([]node, 0, n)
	for i := range n {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), func(c *Config) {
			if i > 0 {
				c.Join = []string{nodes[i-1].Addr()}
				c.RetryJoin = 200 * time.Millisecond
			}
			if edit != nil {
				edit(c)
			}
		}))
	}
	waitAlive(t, nodes, n)
	return nodes
}

// waitAlive waits until every node sees want alive members.
func waitAlive(t testing.TB, nodes []node, want int) time.Duration {
	t.Helper()
	return eventually(t, 10*time.Second, "convergence", func() error {
		for _, nd := range nodes {
			if got := countState(nd.Members(), StateAlive); got != want {
				return fmt.Errorf("%s sees %d alive, want %d: %v", nd.LocalName(), got, want, nd.Members())
			}
		}
		return nil
	})
}

func countState(ms []Member, state string) int {
	n := 0
	for _, m := range ms {
		if m.State == state {
			n++
		}
	}
	return n
}

func stateOf(ms []Member, name string) string {
	for _, m := range ms {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}
