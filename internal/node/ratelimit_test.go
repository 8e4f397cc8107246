package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"rhizome/internal/control"
)

// TestRateLimitFromTheBundle: a site's rate_limits come in the bundle; over the limit the
// node answers 429 with Retry-After; other paths are untouched; the kill switch turns the
// stage off at once.
func TestRateLimitFromTheBundle(t *testing.T) {
	op := newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 1, op))
	defer stop(t, n)
	o := origin(t, "ok")
	src := string(source(1, o)) + "    rate_limits:\n      - {name: api, path_prefix: /api/, limit: 5, period: 1m, burst: 5}\n"
	if code, out := push(t, n, signed(t, []byte(src), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	count := func(path string, times int) (ok, limited int, retry string) {
		for range times {
			resp, err := http.Get("http://" + n.Edge.Addr.String() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok++
			case 429:
				limited++
				retry = resp.Header.Get("Retry-After")
				if !strings.Contains(resp.Header.Get("Cache-Status"), "rate-limited") {
					t.Fatalf("429 without its reason: %q", resp.Header.Get("Cache-Status"))
				}
			default:
				t.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
		}
		return
	}
	if ok, limited, retry := count("/api/x", 20); ok != 5 || limited != 15 || retry == "" {
		t.Fatalf("/api/: %d ok, %d limited (Retry-After %q); want 5 and 15", ok, limited, retry)
	}
	if ok, limited, _ := count("/home", 20); ok != 20 || limited != 0 {
		t.Fatalf("/home: %d ok, %d limited", ok, limited)
	}
	rec := control.Record{Kind: control.KindKillSwitch, Stage: "ratelimit", On: true, At: time.Now().UnixMilli()}
	s, err := control.Sign(rec, op.priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddControl(s.Encode()); err != nil {
		t.Fatal(err)
	}
	if ok, limited, _ := count("/api/x", 10); ok != 10 || limited != 0 {
		t.Fatalf("with the kill switch on: %d ok, %d limited", ok, limited)
	}
	if st := n.Edge.Proxy.Health(); st.StageFailures != 0 {
		t.Fatalf("stage failures: %+v", st)
	}
}
