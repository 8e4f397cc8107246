package node

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"rhizome/internal/control"
	"rhizome/internal/rollout"
)

// startMesh starts size nodes joined into one fast-timer mesh, all trusting op.
func startMesh(t *testing.T, size int, op keypair) []*Node {
	t.Helper()
	var nodes []*Node
	var seed string
	for i := range size {
		var join []string
		if i > 0 {
			join = []string{seed}
		}
		boot, _ := meshBootstrap(t, fmt.Sprintf("n%d", i), join, op)
		n := start(t, boot)
		if i == 0 {
			seed = n.gossip.mesh.Addr()
		}
		nodes = append(nodes, n)
		t.Cleanup(func() { stop(t, n) })
	}
	waitFor(t, "all members alive", 15*time.Second, func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != size {
				return false
			}
		}
		return true
	})
	return nodes
}

func staged(serial int, origin, rollout string) []byte {
	return append(source(serial, origin), []byte(rollout)...)
}

const threeWaves = "rollout:\n  waves:\n    - nodes: 1\n      bake: 1s\n    - percent: 40\n      bake: 1s\n    - percent: 100\n  watch: 3s\n"

func sendControl(t *testing.T, n *Node, rec control.Record, k keypair) (int, string) {
	t.Helper()
	s, err := control.Sign(rec, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.Edge.AdminAddr.String()+"/v1/control", bytes.NewReader(s.Encode()))
	req.Header.Set("Authorization", "Bearer "+n.Edge.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func countSerial(nodes []*Node, serial uint64) int {
	c := 0
	for _, n := range nodes {
		if activeSerial(n) == serial {
			c++
		}
	}
	return c
}

// meshOnSerial1 starts size nodes and rolls serial 1 (origin answering "v1") out to all.
func meshOnSerial1(t *testing.T, size int, op keypair) ([]*Node, string) {
	t.Helper()
	nodes := startMesh(t, size, op)
	o := origin(t, "v1")
	if code, out := push(t, nodes[0], signed(t, source(1, o), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	waitFor(t, "serial 1 everywhere", 10*time.Second, func() bool { return countSerial(nodes, 1) == size })
	return nodes, o
}

// TestStagedRollout: a bundle with waves reaches one node, then 40%, then everyone, each
// wave starting only after the one before has run it healthy for its bake time.
func TestStagedRollout(t *testing.T) {
	op := newKey(t)
	nodes, o := meshOnSerial1(t, 5, op)

	// Push to the last node: wherever a bundle enters, the waves decide who runs it.
	pushed := time.Now()
	if code, out := push(t, nodes[4], signed(t, staged(2, o, threeWaves), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	var counts []int
	var times []time.Duration
	last := 0
	waitFor(t, "serial 2 everywhere", 20*time.Second, func() bool {
		c := countSerial(nodes, 2)
		if c != last {
			counts, times, last = append(counts, c), append(times, time.Since(pushed)), c
		}
		return c == 5
	})
	t.Logf("nodes on serial 2 over time: %v at %v", counts, times)
	// Sizes for 5 nodes: 1, then 2 (40%), then 5.
	if counts[0] != 1 {
		t.Fatalf("the first wave had %d nodes, want 1 (counts %v)", counts[0], counts)
	}
	for i, c := range counts {
		if c > 1 && times[i] < time.Second {
			t.Fatalf("%d nodes ran the bundle %v after the push, before the 1s bake of wave 0", c, times[i])
		}
		if c > 2 && times[i] < 2*time.Second {
			t.Fatalf("%d nodes ran the bundle %v after the push, before two bakes", c, times[i])
		}
	}
	st := nodes[0].Rollout()
	if st.State != "active" || len(st.Waves) != 3 {
		t.Fatalf("rollout status: %+v", st)
	}
}

// TestUnhealthyCanaryHaltsRollout: the node in the first wave turns unhealthy on a new
// bundle: it reports it, goes back to its last good bundle, and no other node ever runs it.
func TestUnhealthyCanaryHaltsRollout(t *testing.T) {
	op := newKey(t)
	nodes, o := meshOnSerial1(t, 5, op)

	// Every node would fail on serial 2; only the canary ever gets to run it.
	for _, n := range nodes {
		n.InjectFaults(rollout.Counters{}) // nothing yet
	}
	bad := staged(2, o, "rollout:\n  waves:\n    - nodes: 1\n      bake: 3s\n    - percent: 100\n")
	if code, out := push(t, nodes[2], signed(t, bad, op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	var canary *Node
	waitFor(t, "the canary runs serial 2", 10*time.Second, func() bool {
		for _, n := range nodes {
			if activeSerial(n) == 2 {
				canary = n
				return true
			}
		}
		return false
	})
	hash := canary.Active().Hash
	canary.InjectFaults(rollout.Counters{Requests: 100, NodeErrors: 40})
	took := waitFor(t, "the canary back on serial 1", 5*time.Second, func() bool { return activeSerial(canary) == 1 })
	t.Logf("canary %s rolled back %v after its failures", canary.boot.Name, took)
	// The halt reaches every node (a node that never fetched the bundle holds the record,
	// not the bundle), and for well past the bake time nobody runs serial 2.
	waitFor(t, "every node knows serial 2 is halted", 10*time.Second, func() bool {
		for _, n := range nodes {
			if !n.Stopped(hash).Rollback {
				return false
			}
		}
		return true
	})
	if r := canary.Rollout(); r.Stopped == nil || !r.Stopped.Rollback || !strings.Contains(r.Watch.LastUnhealthy, "unhealthy on serial 2") {
		t.Fatalf("the canary's rollout status: %+v", r)
	}
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if c := countSerial(nodes, 2); c != 0 {
			t.Fatalf("%d nodes run the halted bundle", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range nodes {
		if code, body := get(t, n, "/"); code != 200 || body != "v1" {
			t.Fatalf("%s serves %d %q after the halt", n.boot.Name, code, body)
		}
	}
	// A fixed bundle (higher serial) rolls out again.
	if code, out := push(t, nodes[0], signed(t, source(3, o), op)); code != 200 {
		t.Fatalf("push fixed: %s", out)
	}
	waitFor(t, "serial 3 everywhere", 10*time.Second, func() bool { return countSerial(nodes, 3) == 5 })
}

// TestOperatorHaltResumeRollback: an operator's signed halt freezes a rollout where it is,
// resume lets it go on, rollback returns the nodes that run it to the last good bundle; a
// record signed by an unknown key is refused.
func TestOperatorHaltResumeRollback(t *testing.T) {
	op, stranger := newKey(t), newKey(t)
	nodes, o := meshOnSerial1(t, 4, op)

	b := signed(t, staged(2, o, "rollout:\n  waves:\n    - nodes: 1\n      bake: 2s\n    - percent: 100\n"), op)
	if code, out := push(t, nodes[1], b); code != 200 {
		t.Fatalf("push: %s", out)
	}
	waitFor(t, "the canary runs serial 2", 10*time.Second, func() bool { return countSerial(nodes, 2) == 1 })
	hash := nodes[1].Rollout().Bundle
	now := time.Now().UnixMilli()
	if code, out := sendControl(t, nodes[3], control.Record{Kind: control.KindHalt, Bundle: hash, At: now}, stranger); code == 200 {
		t.Fatalf("a halt by an untrusted key was accepted: %s", out)
	}
	if code, out := sendControl(t, nodes[3], control.Record{Kind: control.KindHalt, Bundle: hash, Reason: "checking", At: now}, op); code != 200 {
		t.Fatalf("halt: %s", out)
	}
	time.Sleep(4 * time.Second) // twice the bake: the next wave would have started
	if c := countSerial(nodes, 2); c != 1 {
		t.Fatalf("after the halt %d nodes run serial 2, want the canary alone", c)
	}
	if code, out := sendControl(t, nodes[0], control.Record{Kind: control.KindResume, Bundle: hash, At: now + 1}, op); code != 200 {
		t.Fatalf("resume: %s", out)
	}
	waitFor(t, "serial 2 everywhere after resume", 15*time.Second, func() bool { return countSerial(nodes, 2) == 4 })
	if code, out := sendControl(t, nodes[2], control.Record{Kind: control.KindRollback, Bundle: hash, At: now + 2}, op); code != 200 {
		t.Fatalf("rollback: %s", out)
	}
	waitFor(t, "serial 1 everywhere after rollback", 10*time.Second, func() bool { return countSerial(nodes, 1) == 4 })
	// The rolled-back bundle is refused if pushed again; the node keeps serving.
	if code, _ := push(t, nodes[0], b); code == 200 {
		t.Fatal("a rolled-back bundle was accepted again")
	}
}

// TestKillSwitch: a signed kill switch reaches every node at once and survives a restart.
func TestKillSwitch(t *testing.T) {
	op := newKey(t)
	nodes := startMesh(t, 3, op)
	rec := control.Record{Kind: control.KindKillSwitch, Stage: "waf", Site: "shop", On: true, At: time.Now().UnixMilli()}
	if code, out := sendControl(t, nodes[0], rec, op); code != 200 {
		t.Fatalf("killswitch: %s", out)
	}
	waitFor(t, "the switch on every node", 5*time.Second, func() bool {
		for _, n := range nodes {
			if !control.Killed(n.State().KillSwitches, "waf", "shop") {
				return false
			}
		}
		return true
	})
	if control.Killed(nodes[1].State().KillSwitches, "waf", "blog") {
		t.Fatal("a switch for one site bypasses the stage on another")
	}
	// Persisted: a restarted node still has it before it hears from anyone.
	boot := nodes[2].boot
	nodes[2].Kill()
	boot.Mesh.Join = nil
	n := start(t, boot)
	defer stop(t, n)
	if !control.Killed(n.State().KillSwitches, "waf", "shop") {
		t.Fatal("the kill switch was lost across a restart")
	}
	bad := control.Record{Kind: control.KindKillSwitch, Stage: "nonsense", On: true, At: time.Now().UnixMilli()}
	if _, err := control.Sign(bad, op.priv); err == nil {
		t.Fatal("a switch for an unknown stage was signed")
	}
}

// TestConfirmAsksTheWaveBefore: before a later wave starts, a node asks the members of the
// wave before, directly, whether they run the bundle healthy, and takes their control
// records: what gossip lost (a rollback, a halt) cannot let it start.
func TestConfirmAsksTheWaveBefore(t *testing.T) {
	op := newKey(t)
	nodes := startMesh(t, 2, op)
	a, b := nodes[0], nodes[1]
	o := origin(t, "v1")
	push(t, a, signed(t, source(1, o), op))
	waitFor(t, "serial 1 on both", 10*time.Second, func() bool { return countSerial(nodes, 1) == 2 })

	raw := signed(t, staged(2, o, "rollout:\n  waves:\n    - {nodes: 1, bake: 1h}\n    - {percent: 100}\n"), op)
	c, err := b.check(raw)
	if err != nil {
		t.Fatal(err)
	}
	members := b.membersByName()
	err = b.gossip.confirmAll(c, []string{"n0"}, members)
	if err == nil || !strings.Contains(err.Error(), "runs serial 1, not 2") {
		t.Fatalf("confirm against a node on serial 1: %v", err)
	}
	// n0 knows of a halt that n1 never heard (added without gossip): confirming fetches it.
	s, err := control.Sign(control.Record{Kind: control.KindHalt, Bundle: c.info.Hash, At: time.Now().UnixMilli()}, op.priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.controls.Add(a.verifier(true), s); err != nil {
		t.Fatal(err)
	}
	err = b.gossip.confirmAll(c, []string{"n0"}, members)
	if err == nil || !b.controls.Bundle(c.info.Hash).Halted {
		t.Fatalf("the halt known to the wave before was not taken: %v", err)
	}
}

// TestRestartedNodeDoesNotCanaryItself: a node that held a bundle for a later wave and
// restarts sees, for a moment, only itself; it must not rank itself first and start the
// bundle before it has caught up with the mesh.
func TestRestartedNodeDoesNotCanaryItself(t *testing.T) {
	op := newKey(t)
	nodes, o := meshOnSerial1(t, 3, op)
	b := signed(t, staged(2, o, "rollout:\n  waves:\n    - {nodes: 1, bake: 1h}\n    - {percent: 100}\n"), op)
	if code, out := push(t, nodes[0], b); code != 200 {
		t.Fatalf("push: %s", out)
	}
	waitFor(t, "the canary on serial 2", 10*time.Second, func() bool { return countSerial(nodes, 2) == 1 })
	var held *Node
	waitFor(t, "a later-wave node holding serial 2", 10*time.Second, func() bool {
		for _, n := range nodes {
			if st := n.State(); st.Pending != nil && st.Pending.Serial == 2 {
				held = n
				return true
			}
		}
		return false
	})
	var live *Node
	for _, n := range nodes {
		if n != held {
			live = n
		}
	}
	boot := held.boot
	held.Kill()
	boot.Mesh.Join = []string{live.MeshAddr()}
	n := start(t, boot)
	defer stop(t, n)
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if activeSerial(n) == 2 {
			t.Fatalf("the restarted node started serial 2 on its own: %+v", n.Rollout())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := n.Rollout()
	if r.State != "pending" || r.Wave == 0 {
		t.Fatalf("restarted node: %+v", r)
	}
	t.Logf("restarted node waits: %s", r.Waiting)
}
