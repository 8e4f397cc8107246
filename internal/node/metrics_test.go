package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsEndpoint scrapes /metrics on a node's admin address after real traffic.
func TestMetricsEndpoint(t *testing.T) {
	op := newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 1, op))
	defer stop(t, n)
	if code, out := push(t, n, signed(t, append(source(1, origin(t, "ok")), "    waf: {}\n"...), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	for _, path := range []string{"/", "/a", "/?q=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E"} {
		if code, _ := get(t, n, path); code == 0 {
			t.Fatal("no answer")
		}
	}
	resp, err := http.Get("http://" + n.Edge.AdminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := string(b)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"rhizome_requests_total 3\n",
		`rhizome_responses_total{class="2xx"} 2` + "\n",
		`rhizome_responses_total{class="4xx"} 1` + "\n",
		`rhizome_stage_blocks_total{stage="waf"} 1` + "\n",
		"rhizome_waf_blocked_total 1\n",
		"rhizome_bundle_serial 1\n",
		`rhizome_build_info{node="test-1"`,
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
