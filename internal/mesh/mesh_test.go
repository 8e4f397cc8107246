package mesh

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestStartRejectsBadConfig(t *testing.T) {
	good := func() Config {
		return Config{Name: "a", Bind: "127.0.0.1:0", Delegate: &recorder{}, Logger: testLogger()}
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"empty name", func(c *Config) { c.Name = "" }, "Name"},
		{"name with space", func(c *Config) { c.Name = "a b" }, "Name"},
		{"name too long", func(c *Config) { c.Name = strings.Repeat("x", MaxNameLen+1) }, "Name"},
		{"empty bind", func(c *Config) { c.Bind = "" }, "Bind"},
		{"bind without port", func(c *Config) { c.Bind = "127.0.0.1" }, "Bind"},
		{"bind host not ip", func(c *Config) { c.Bind = "localhost:7946" }, "Bind"},
		{"bind port out of range", func(c *Config) { c.Bind = "127.0.0.1:70000" }, "Bind"},
		{"bad advertise", func(c *Config) { c.Advertise = "nowhere" }, "Advertise"},
		{"bad join entry", func(c *Config) { c.Join = []string{"127.0.0.1:1", "nope"} }, "Join[1]"},
		{"negative retry", func(c *Config) { c.RetryJoin = -time.Second }, "RetryJoin"},
		{"key 7 bytes", func(c *Config) { c.Key = make([]byte, 7) }, "Key"},
		{"key empty non-nil", func(c *Config) { c.Key = []byte{} }, "Key"},
		{"meta too large", func(c *Config) { c.Meta.Region = strings.Repeat("r", MaxMetaSize) }, "Meta"},
		{"fetch url too long", func(c *Config) { c.Meta.FetchURL = strings.Repeat("u", MaxURLLen+1) }, "Meta"},
		{"nil delegate", func(c *Config) { c.Delegate = nil }, "Delegate"},
		{"negative push/pull", func(c *Config) { c.PushPullInterval = -1 }, "PushPullInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c)
			m, err := Start(c)
			if err == nil {
				_ = m.Shutdown()
				t.Fatal("Start succeeded, want error")
			}
			if !strings.Contains(err.Error(), "config "+tt.field) {
				t.Errorf("error %q does not name field %s", err, tt.field)
			}
		})
	}
}

func TestMeshConvergesAndAnnounces(t *testing.T) {
	start := time.Now()
	nodes := startCluster(t, 5, nil)
	t.Logf("5 nodes converged in %v", time.Since(start))

	// Meta travels with membership.
	for _, m := range nodes[0].Members() {
		if m.Meta.Region != "test-"+m.Name || m.Meta.FetchURL == "" {
			t.Errorf("member %s meta = %+v", m.Name, m.Meta)
		}
	}

	// From and URL default to the announcer's name and FetchURL. As a real node does, the
	// announcer also digests what it announced: broadcasts are best effort (UDP, dropped
	// under load, as seen on a busy 2-core CI machine), and push/pull backs them.
	want := Announcement{From: "n2", Serial: 7, Hash: hashOf("bundle-7"), URL: "http://n2.invalid/bundles/"}
	nodes[2].rec.setDigest(want)
	nodes[2].Announce(Announcement{Serial: 7, Hash: hashOf("bundle-7")})
	took := eventually(t, 15*time.Second, "announcement reaches all", func() error {
		for i, nd := range nodes {
			if i != 2 && !nd.rec.has(want) {
				return fmt.Errorf("%s has not heard %+v", nd.LocalName(), want)
			}
		}
		return nil
	})
	t.Logf("announcement reached 4 peers in %v", took)
	if s := nodes[2].Stats(); s.Announced != 1 {
		t.Errorf("announcer stats = %+v, want Announced 1", s)
	}
}

func TestAnnounceDropsInvalid(t *testing.T) {
	n := startNode(t, "solo", nil)
	n.Announce(Announcement{Serial: 1, Hash: "not-hex"})
	if s := n.Stats(); s.Announced != 0 || s.Queued != 0 {
		t.Errorf("invalid announcement was queued: %+v", s)
	}
}

func TestAntiEntropyHealsMissedGossip(t *testing.T) {
	fastPushPull := func(c *Config) { c.PushPullInterval = 500 * time.Millisecond }
	nodes := startCluster(t, 3, fastPushPull)

	ann := Announcement{From: "n0", Serial: 3, Hash: hashOf("bundle-3"), URL: "http://n0.invalid/bundles/"}
	nodes[0].rec.setDigest(ann) // n0 now runs it...
	nodes[0].Announce(ann)      // ...and says so
	eventually(t, 5*time.Second, "gossip reaches the first nodes", func() error {
		for _, nd := range nodes[1:] {
			if !nd.rec.has(ann) {
				return fmt.Errorf("%s has not heard it", nd.LocalName())
			}
		}
		return nil
	})
	// Wait until every queue has spent its retransmits: from here on nobody
	// gossips the announcement, so a newcomer can only learn it by push/pull.
	eventually(t, 5*time.Second, "broadcast queues drain", func() error {
		for _, nd := range nodes {
			if q := nd.Stats().Queued; q != 0 {
				return fmt.Errorf("%s still has %d queued", nd.LocalName(), q)
			}
		}
		return nil
	})

	late := startNode(t, "late", func(c *Config) {
		fastPushPull(c)
		c.Join = []string{nodes[2].Addr()} // not the announcer
	})
	took := eventually(t, 10*time.Second, "late node hears the digest", func() error {
		if !late.rec.has(ann) {
			return errors.New("not yet")
		}
		return nil
	})
	s := late.Stats()
	t.Logf("late node heard the digest %v after start; stats %+v", took, s)
	if s.Heard != 0 {
		t.Errorf("late node heard %d gossiped announcements; the test wants it to learn by push/pull only", s.Heard)
	}
	if s.Digests == 0 {
		t.Error("late node counted no digests")
	}
}

func TestEncryptionSeparatesMeshes(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.Key = k } }
	nodes := startCluster(t, 2, withKey(key))

	outsiders := map[string][]byte{
		"wrongkey": []byte("fedcba9876543210"),
		"nokey":    nil,
	}
	for name, k := range outsiders {
		o := startNode(t, name, func(c *Config) {
			c.Key = k
			c.Join = []string{nodes[0].Addr()}
			c.RetryJoin = 100 * time.Millisecond
		})
		if n, err := o.Join([]string{nodes[1].Addr()}); err == nil && n > 0 {
			t.Errorf("%s: Join succeeded (%d contacted), want failure", name, n)
		} else {
			t.Logf("%s: Join failed as expected: %v", name, err)
		}
	}
	// Give the background retries time to try, then check nobody mixed.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			for _, m := range nd.Members() {
				if _, bad := outsiders[m.Name]; bad {
					t.Fatalf("%s sees outsider %s as %s", nd.LocalName(), m.Name, m.State)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitAlive(t, nodes, 2)
}

func TestFailureDetection(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	victim := nodes[4]
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "victim declared dead", func() error {
		for _, nd := range nodes[:4] {
			if st := stateOf(nd.Members(), victim.LocalName()); st != StateDead {
				return fmt.Errorf("%s sees %s as %q", nd.LocalName(), victim.LocalName(), st)
			}
		}
		return nil
	})
	t.Logf("failure detected by all 4 survivors in %v (probe 200ms, suspicion mult 3)", took)
	waitAlive(t, nodes[:4], 4)
}

func TestLeaveIsGraceful(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	eventually(t, 5*time.Second, "leaver marked left", func() error {
		for _, nd := range nodes[:2] {
			if st := stateOf(nd.Members(), "n2"); st != StateLeft {
				return fmt.Errorf("%s sees n2 as %q", nd.LocalName(), st)
			}
		}
		return nil
	})
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := nodes[2].Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown = %v, want ErrShutdown", err)
	}
	if _, err := nodes[2].Join([]string{nodes[0].Addr()}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Join after Shutdown = %v, want ErrShutdown", err)
	}
	nodes[2].Announce(Announcement{Serial: 1, Hash: hashOf("x")}) // no-op, no panic
}

func TestMembersSortedWithSelf(t *testing.T) {
	n := startNode(t, "solo", nil)
	ms := n.Members()
	if len(ms) != 1 || ms[0].Name != "solo" || ms[0].State != StateAlive || ms[0].Addr != n.Addr() {
		t.Fatalf("Members = %+v, want only solo alive at %s", ms, n.Addr())
	}
}
