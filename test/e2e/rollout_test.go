package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/node"
	"rhizome/internal/rollout"
)

// TestBadBundleStaysInTheCanaryWave runs three node processes and pushes a bundle whose
// site's origin is the canary itself: the misconfiguration where an operator points a site
// at the CDN's own address. It passes every check (the self-test simulates the origin); in
// production each request loops back to the canary, which answers 508 and counts it as its
// own error. The canary reports itself unhealthy and goes back to its last good bundle; the
// other nodes never run the bad bundle. Kill switches and `rhizome rollout` are driven
// through the CLI.
func TestBadBundleStaysInTheCanaryWave(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "v1")
	}))
	defer good.Close()
	key := filepath.Join(dir, "op")
	rz(t, "keygen", "--out", key)
	pub, _ := os.ReadFile(key + ".pub")
	ps := startProcs(t, dir, "r", 3, strings.TrimSpace(string(pub)))
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	sign := func(name, src string) (path, hash string) {
		f := filepath.Join(dir, name+".yaml")
		os.WriteFile(f, []byte(src), 0o600)
		rz(t, "bundle", "sign", f, "--key", key+".key")
		path = strings.TrimSuffix(f, ".yaml") + ".bundle"
		b, _ := os.ReadFile(path)
		s, err := bundle.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		return path, s.Hash()
	}
	b1, _ := sign("b1", fmt.Sprintf("serial: 1\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: %q}]\n", good.URL))
	rz(t, "push", "--admin", ps[0].admin, "--data-dir", ps[0].dir, b1)
	waitAll(t, "v1 everywhere", 15*time.Second, ps, "v1")

	// Sign bundles until one's canary is the node its origin points at. The canary follows
	// from the bundle hash, which covers the origin and the signing time: a few tries.
	var bad, badHash string
	var canary *proc
	var others []*proc
	for try := 0; canary == nil; try++ {
		if try > 50 {
			t.Fatal("no bundle whose canary is its origin after 50 tries")
		}
		target := ps[try%3]
		src := fmt.Sprintf("serial: 2\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: \"http://%s\"}]\n    cache: {disabled: true}\nrollout:\n  waves:\n    - {nodes: 1, bake: 3s}\n    - {percent: 100}\n", target.listen)
		path, hash := sign(fmt.Sprintf("b2-%d", try), src)
		if rollout.Rank(names, hash)[0] == target.name {
			bad, badHash, canary = path, hash, target
		}
		if canary == nil {
			time.Sleep(time.Second) // a new signing time, a new hash
		}
	}
	for _, p := range ps {
		if p != canary {
			others = append(others, p)
		}
	}
	t.Logf("canary %s, bad bundle %s", canary.name, badHash[:16])

	// Traffic on every node while the bad bundle is out; the others must answer v1 all along.
	var wrong atomic.Int64
	var wrongSample atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			canary.get()
			for _, p := range others {
				if g := p.get(); g != "v1" {
					wrong.Add(1)
					wrongSample.Store(p.name + ": " + g)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	pushedAt := time.Now()
	out := rz(t, "push", "--admin", others[0].admin, "--data-dir", others[0].dir, bad)
	if !strings.Contains(out, "accepted") {
		t.Fatalf("push to a later-wave node: %s", out)
	}
	// The canary runs it (its answers turn to 508), judges itself, and goes back.
	sawBad := false
	for time.Since(pushedAt) < 13*time.Second { // bake 3s + 10s: the goal
		g := canary.get()
		if strings.Contains(g, "508") || strings.Contains(g, "oop") {
			sawBad = true
		}
		if sawBad && g == "v1" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !sawBad || canary.get() != "v1" {
		t.Fatalf("canary did not run and then leave the bad bundle within 13s (saw it: %v, serves %q)\n%s", sawBad, canary.get(), canary.log.String())
	}
	t.Logf("canary back on the last good bundle %v after the push", time.Since(pushedAt))
	time.Sleep(5 * time.Second) // past the canary's bake: without the halt the rest would follow
	close(stop)
	<-done
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d answers other than v1 from later-wave nodes, e.g. %v", n, wrongSample.Load())
	}

	// Every node says why, through the CLI.
	var st node.RolloutStatus
	if err := json.Unmarshal([]byte(rz(t, "rollout", "status", "--json", "--admin", others[1].admin, "--data-dir", others[1].dir)), &st); err != nil {
		t.Fatal(err)
	}
	// It holds the canary's signed report (and, if it fetched the bundle, shows it rolled back).
	reported := false
	for _, r := range st.Records {
		reported = reported || r.Kind == "unhealthy" && r.Bundle == badHash && r.Node == canary.name
	}
	if !reported || st.Stopped != nil && !strings.Contains(st.Stopped.Reason, canary.name) {
		t.Fatalf("rollout status on %s: %+v", others[1].name, st)
	}
	text := rz(t, "rollout", "status", "--admin", others[1].admin, "--data-dir", others[1].dir)
	if !strings.Contains(text, "unhealthy") || !strings.Contains(text, "node "+canary.name) {
		t.Fatalf("rollout status text:\n%s", text)
	}
	// The halted bundle cannot be pushed again.
	cmdOut, err := runRZ("push", "--admin", canary.admin, "--data-dir", canary.dir, bad)
	if err == nil || !strings.Contains(cmdOut, "halted") {
		t.Fatalf("re-push of the halted bundle: %v: %s", err, cmdOut)
	}

	// A kill switch set on one node is on every node within seconds, and after a restart.
	rz(t, "killswitch", "waf", "on", "--key", key+".key", "--admin", ps[0].admin, "--data-dir", ps[0].dir)
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range ps {
		for {
			var s node.RolloutStatus
			json.Unmarshal([]byte(rz(t, "rollout", "status", "--json", "--admin", p.admin, "--data-dir", p.dir)), &s)
			if len(s.KillSwitches) == 1 && s.KillSwitches[0].Stage == "waf" && s.KillSwitches[0].On {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill switch not on %s: %+v", p.name, s.KillSwitches)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ps[2].kill9()
	ps[2].start(t)
	if text := rz(t, "rollout", "status", "--admin", ps[2].admin, "--data-dir", ps[2].dir); !strings.Contains(text, "kill switch waf (all sites): on") {
		t.Fatalf("kill switch lost across kill -9 and restart:\n%s", text)
	}
}
