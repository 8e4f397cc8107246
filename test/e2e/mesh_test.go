// Package e2e runs the real rhizome binary as separate processes: what a deployment does,
// including kill -9, which in-process tests cannot do.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rhizome-e2e-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "rhizome")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/rhizome").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func rz(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runRZ(args...)
	if err != nil {
		t.Fatalf("rhizome %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runRZ runs the binary and returns its combined output.
func runRZ(args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// startProcs starts count node processes named prefix0.. in one mesh, trusting the operator
// public key pub, with fast timers; they are killed when the test ends.
func startProcs(t *testing.T, dir, prefix string, count int, pub string) []*proc {
	t.Helper()
	return startProcsWith(t, dir, prefix, count, pub, nil)
}

// startProcsWith is startProcs with extra bootstrap lines for node i.
func startProcsWith(t *testing.T, dir, prefix string, count int, pub string, extra func(i int) string) []*proc {
	t.Helper()
	var ps []*proc
	for i := range count {
		p := &proc{name: fmt.Sprintf("%s%d", prefix, i), dir: filepath.Join(dir, fmt.Sprintf("%s%d", prefix, i)),
			listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		join := ""
		if i > 0 {
			join = "  join: [" + ps[0].gossip + "]\n"
		}
		cfg := fmt.Sprintf("name: %s\nregion: local\ndata_dir: %s\nlisten: %s\nadmin: %s\naccess_log: false\nmesh:\n  bind: %s\n  fetch: 127.0.0.1:%d\n  fast_timers: true\n%strust:\n  keys: [%s]\n",
			p.name, p.dir, p.listen, p.admin, p.gossip, freePort(t), join, pub)
		if extra != nil {
			cfg += extra(i)
		}
		p.config = filepath.Join(dir, p.name+".yaml")
		if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p.start(t)
		t.Cleanup(p.kill9)
		ps = append(ps, p)
	}
	return ps
}

type proc struct {
	name, dir, config string
	listen, admin     string
	gossip            string
	cmd               *exec.Cmd
	log               *bytes.Buffer
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(bin, "node", "--config", p.config, "--log-format", "text", "--log-level", "debug")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", p.admin); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start:\n%s", p.name, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) kill9() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

func (p *proc) get() string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.listen + "/")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitAll(t *testing.T, what string, within time.Duration, ps []*proc, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		var got []string
		for _, p := range ps {
			g := p.get()
			got = append(got, p.name+"="+g)
			if g != want {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: after %v: %v", what, within, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessesKillAndRecover: three node processes; bundles pushed to one reach all; a
// node killed with -9 restarts serving its last-known-good and catches up; with the node
// that was pushed to gone, the rest take a push elsewhere and converge.
func TestProcessesKillAndRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	versions := map[string]*httptest.Server{}
	for _, v := range []string{"v1", "v2", "v3"} {
		v := v
		versions[v] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, v)
		}))
		defer versions[v].Close()
	}
	key := filepath.Join(dir, "op")
	rz(t, "keygen", "--out", key)
	pub, _ := os.ReadFile(key + ".pub")

	ps := startProcs(t, dir, "n", 3, strings.TrimSpace(string(pub)))
	bundleFor := func(serial int, v string) string {
		src := filepath.Join(dir, fmt.Sprintf("b%d.yaml", serial))
		os.WriteFile(src, []byte(fmt.Sprintf("serial: %d\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: %q}]\n", serial, versions[v].URL)), 0o600)
		rz(t, "bundle", "sign", src, "--key", key+".key")
		return strings.TrimSuffix(src, ".yaml") + ".bundle"
	}
	push := func(p *proc, b string) {
		rz(t, "push", "--admin", p.admin, "--data-dir", p.dir, b)
	}

	push(ps[0], bundleFor(1, "v1"))
	t.Logf("serial 1 on all 3 processes in %v", waitAll(t, "v1 everywhere", 15*time.Second, ps, "v1"))

	ps[2].kill9()
	push(ps[0], bundleFor(2, "v2"))
	waitAll(t, "v2 on the live nodes", 15*time.Second, ps[:2], "v2")
	ps[2].start(t)
	if got := ps[2].get(); got != "v1" && got != "v2" {
		t.Fatalf("restarted node serves %q: want its last-known-good v1 (or already v2)", got)
	}
	t.Logf("restarted node caught up in %v", waitAll(t, "the restarted node to catch up", 15*time.Second, ps[2:], "v2"))

	ps[0].kill9() // the node the operator pushed to is gone
	push(ps[1], bundleFor(3, "v3"))
	t.Logf("without n0, serial 3 on the others in %v", waitAll(t, "v3 on n1, n2", 15*time.Second, ps[1:], "v3"))
}

// nft runs an nftables command, for partition tests.
func nft(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPartitionedNodeKeepsServingAndCatchesUp: a node cut off from the mesh (its gossip and
// fetch ports dropped with nftables) keeps serving what it has while the others move on,
// and catches up when the partition heals.
func TestPartitionedNodeKeepsServingAndCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (apt-get install nftables)")
	}
	dir := t.TempDir()
	origin := func(v string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, v)
		}))
	}
	o1, o2 := origin("v1"), origin("v2")
	defer o1.Close()
	defer o2.Close()
	key := filepath.Join(dir, "op")
	rz(t, "keygen", "--out", key)
	pub, _ := os.ReadFile(key + ".pub")
	var ps []*proc
	var fetchPorts []int
	for i := range 3 {
		p := &proc{name: fmt.Sprintf("p%d", i), dir: filepath.Join(dir, fmt.Sprintf("p%d", i)),
			listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		fetch := freePort(t)
		fetchPorts = append(fetchPorts, fetch)
		join := ""
		if i > 0 {
			join = "  join: [" + ps[0].gossip + "]\n"
		}
		cfg := fmt.Sprintf("name: %s\ndata_dir: %s\nlisten: %s\nadmin: %s\naccess_log: false\nmesh:\n  bind: %s\n  fetch: 127.0.0.1:%d\n  fast_timers: true\n%strust:\n  keys: [%s]\n",
			p.name, p.dir, p.listen, p.admin, p.gossip, fetch, join, strings.TrimSpace(string(pub)))
		p.config = filepath.Join(dir, p.name+".yaml")
		os.WriteFile(p.config, []byte(cfg), 0o600)
		p.start(t)
		defer p.kill9()
		ps = append(ps, p)
	}
	signPush := func(serial int, url string, p *proc) {
		src := filepath.Join(dir, fmt.Sprintf("b%d.yaml", serial))
		os.WriteFile(src, []byte(fmt.Sprintf("serial: %d\nsites:\n  - name: s\n    hosts: [\"*\"]\n    origins: [{url: %q}]\n", serial, url)), 0o600)
		rz(t, "bundle", "sign", src, "--key", key+".key")
		rz(t, "push", "--admin", p.admin, "--data-dir", p.dir, strings.TrimSuffix(src, ".yaml")+".bundle")
	}
	signPush(1, o1.URL, ps[0])
	waitAll(t, "v1 everywhere", 15*time.Second, ps, "v1")

	// Cut p2 off: every packet to or from its gossip and fetch ports is dropped.
	const table = "rhizome_e2e"
	nft(t, "add", "table", "inet", table)
	defer exec.Command("nft", "delete", "table", "inet", table).Run()
	nft(t, "add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }")
	gp := strings.TrimPrefix(ps[2].gossip, "127.0.0.1:")
	for _, rule := range [][]string{
		{"udp", "dport", gp}, {"udp", "sport", gp}, {"tcp", "dport", gp}, {"tcp", "sport", gp},
		{"tcp", "dport", fmt.Sprint(fetchPorts[2])}, {"tcp", "sport", fmt.Sprint(fetchPorts[2])},
	} {
		nft(t, append([]string{"add", "rule", "inet", table, "out"}, append(rule, "drop")...)...)
	}
	signPush(2, o2.URL, ps[0])
	waitAll(t, "v2 on the connected nodes", 15*time.Second, ps[:2], "v2")
	if got := ps[2].get(); got != "v1" {
		t.Fatalf("the partitioned node serves %q, want v1 (what it had)", got)
	}
	// Heal.
	nft(t, "delete", "table", "inet", table)
	t.Logf("partition healed; caught up in %v", waitAll(t, "the healed node to catch up", 30*time.Second, ps[2:], "v2"))
}
