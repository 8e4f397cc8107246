package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDNSAcrossProcesses: three node processes answer for the bundle's zone (checked with
// dig when it is installed); a node killed with -9 leaves the answers of the others within
// the failure detection time, and comes back when it restarts.
func TestDNSAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install dnsutils)")
	}
	dir := t.TempDir()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "v1") }))
	defer o.Close()
	key := filepath.Join(dir, "op")
	rz(t, "keygen", "--out", key)
	pub, _ := os.ReadFile(key + ".pub")
	dnsPorts := []int{freePort(t), freePort(t), freePort(t)}
	ps := startProcsWith(t, dir, "d", 3, strings.TrimSpace(string(pub)), func(i int) string {
		return fmt.Sprintf("dns: 127.0.0.1:%d\n", dnsPorts[i])
	})
	src := filepath.Join(dir, "zone.yaml")
	os.WriteFile(src, fmt.Appendf(nil, `serial: 1
sites:
  - name: s
    hosts: ["*"]
    origins: [{url: %q}]
dns:
  nodes:
    - {name: d0, addresses: [192.0.2.10]}
    - {name: d1, addresses: [192.0.2.11]}
    - {name: d2, addresses: [192.0.2.12]}
  zones:
    - name: example.net
      ns: [ns1, ns2]
      records:
        - {name: ns1, type: A, value: 192.0.2.53}
        - {name: ns2, type: A, value: 198.51.100.53}
        - {name: "@", type: TXT, value: "hello"}
      proxied:
        - {name: www, answers: 3}
`, o.URL), 0o600)
	rz(t, "bundle", "sign", src, "--key", key+".key")
	rz(t, "push", "--admin", ps[0].admin, "--data-dir", ps[0].dir, filepath.Join(dir, "zone.bundle"))
	query := func(port int, name string) []string {
		out, _ := exec.Command(dig, "+short", "+norec", "+time=1", "+tries=1", "-p", fmt.Sprint(port), "@127.0.0.1", name, "A").Output()
		f := strings.Fields(string(out))
		slices.Sort(f)
		return f
	}
	all := []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 3; {
		if slices.Equal(query(dnsPorts[i], "www.example.net"), all) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("d%d answers %v", i, query(dnsPorts[i], "www.example.net"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	full, _ := exec.Command(dig, "+norec", "-p", fmt.Sprint(dnsPorts[1]), "@127.0.0.1", "nothing.example.net", "A").CombinedOutput()
	if !strings.Contains(string(full), "NXDOMAIN") || !strings.Contains(string(full), "flags: qr aa") || !strings.Contains(string(full), "SOA") {
		t.Fatalf("dig NXDOMAIN:\n%s", full)
	}

	killed := time.Now()
	ps[2].kill9()
	for {
		if a, b := query(dnsPorts[0], "www.example.net"), query(dnsPorts[1], "www.example.net"); len(a) == 2 && len(b) == 2 &&
			!slices.Contains(a, "192.0.2.12") && !slices.Contains(b, "192.0.2.12") {
			break
		}
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("the killed node is still in the answers after 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("node killed with -9 out of every answer %v after the kill", time.Since(killed))
	ps[2].start(t)
	back := time.Now()
	for !slices.Equal(query(dnsPorts[0], "www.example.net"), all) {
		if time.Since(back) > 20*time.Second {
			t.Fatalf("the restarted node did not come back: %v", query(dnsPorts[0], "www.example.net"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("restarted node back in the answers %v after its start", time.Since(back))
}
