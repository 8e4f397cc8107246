package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"rhizome/internal/admin"
	"rhizome/internal/bots"
	"rhizome/internal/cache"
	"rhizome/internal/control"
	"rhizome/internal/dashboard"
	"rhizome/internal/mesh"
	"rhizome/internal/node"
	"rhizome/internal/proxy"
	"rhizome/internal/ratelimit"
	"rhizome/internal/rollout"
	"rhizome/internal/stages"
	"rhizome/internal/upstream"
	"rhizome/internal/waf"
)

const (
	goodToken = "good-token-0123"
	downURL   = "http://10.0.0.2:8080" // the origin the fake status reports down
)

// fakeNode serves the dashboard as the admin server mounts it, and a /v1/status made of
// the real Go types whose request counter grows with every poll.
type fakeNode struct {
	polls     atomic.Uint64 // status requests with the right token
	refused   atomic.Uint64 // status requests with another token or none
	down      atomic.Bool   // every request's connection drops, as with a dead node
	startedAt time.Time
}

func (f *fakeNode) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard", dashboard.Handler()))
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+goodToken {
			f.refused.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "missing or wrong bearer token"}`))
			return
		}
		n := f.polls.Add(1)
		_ = json.NewEncoder(w).Encode(f.status(n))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			panic(http.ErrAbortHandler) // the connection drops: fetch fails
		}
		mux.ServeHTTP(w, r)
	})
}

// status is what a node in the middle of a rollout reports on its nth poll.
func (f *fakeNode) status(n uint64) admin.Status {
	now := time.Now().UTC()
	hash7 := strings.Repeat("7a", 32)
	hash8 := strings.Repeat("8b", 32)
	checked := now.Add(-2 * time.Second)
	req := 1000 + 40*n
	st := node.State{
		Node: "edge-a", Region: "eu-west", Provider: "hetzner",
		Active: &node.BundleInfo{Serial: 7, Hash: hash7, Created: now.Add(-time.Hour), Signers: []string{"0123456789abcdef"},
			Activated: now.Add(-5 * time.Minute), Sites: 1, State: "active"},
		Pending: &node.BundleInfo{Serial: 8, Hash: hash8, Created: now.Add(-2 * time.Minute), State: "pending", Wave: 1,
			Waiting: "wave 0: edge-b baking, 1m20s left"},
		KillSwitches: []control.Switch{
			{Stage: "waf", Site: "shop", On: true, At: now.Add(-time.Minute).UnixMilli(), KeyID: "0123456789abcdef"},
			{Stage: "bots", On: false, At: now.Add(-time.Hour).UnixMilli(), KeyID: "0123456789abcdef"},
		},
		Refused: []node.Refusal{{Time: now.Add(-10 * time.Minute), Serial: 6, Hash: strings.Repeat("66", 32),
			Reason: "signature: 1 valid signature of 2 required <script>alert(1)</script>"}},
		Trust: node.TrustSummary{Keys: []string{"0123456789abcdef"}, Required: 1},
		Members: []mesh.Member{
			{Name: "edge-a", Addr: "127.0.0.1:7946", State: mesh.StateAlive, Meta: mesh.Meta{Region: "eu-west", Provider: "hetzner"}, Since: now.Add(-time.Hour)},
			{Name: "edge-b", Addr: "127.0.0.2:7946", State: mesh.StateAlive, Meta: mesh.Meta{Region: "us-east", Provider: "aws"}, Since: now.Add(-time.Hour)},
			{Name: "edge-c", Addr: "127.0.0.3:7946", State: mesh.StateDead, Meta: mesh.Meta{Region: "ap-south", Provider: "ovh"}, Since: now.Add(-30 * time.Second)},
		},
		Peers: []node.PeerState{{Name: "edge-b", Serial: 8, Bundle: hash8, Healthy: true, Figures: [4]uint64{500, 0, 0, 0}}},
		Rollout: &node.RolloutStatus{
			Node: "edge-a", Bundle: hash8, Serial: 8, State: "pending", Wave: 1, Waiting: "wave 0: edge-b baking, 1m20s left",
			Waves: []node.WaveStatus{
				{Target: "1 node(s)", Bake: "2m0s", Members: []node.MemberStatus{{Name: "edge-b", Running: true, Healthy: true, For: "40s"}}},
				{Target: "100%", Bake: "0s", Members: []node.MemberStatus{{Name: "edge-a"}, {Name: "edge-c"}}},
			},
			Watch: node.WatchStatus{Bundle: hash7, Healthy: true, Done: true, Counters: rollout.Counters{Requests: req}},
			Records: []control.Record{{Kind: control.KindKillSwitch, Stage: "waf", Site: "shop", On: true,
				At: now.Add(-time.Minute).UnixMilli(), KeyID: "0123456789abcdef", Reason: "false positives on checkout"}},
		},
		Stages: &node.StageState{
			Driver: map[string]stages.Counters{
				"ratelimit": {Runs: req, Blocks: 3},
				"waf":       {Runs: req / 2, Blocks: 1, Errors: 2, Bypasses: 40 + n},
				"bots":      {Runs: req, Timeouts: 1},
			},
			RateLimit: ratelimit.Stats{Keys: 12, Blocked: 3},
			WAF:       waf.Stats{Inspected: req / 2, Blocked: 1, Detected: 4},
			Bots: map[string]bots.ClassCounts{
				"search":  {Seen: 120, Verified: 100, Blocked: 0},
				"spoofed": {Seen: 7, Blocked: 7},
			},
		},
	}
	return admin.Status{
		Version: "serial-7",
		Uptime:  time.Since(f.startedAt).Round(time.Second).String(),
		Sites:   []admin.SiteInfo{{Name: "shop", Hosts: []string{"shop.example"}, Pools: []string{"primary"}, Cache: true}},
		Upstreams: []upstream.GroupStatus{{Key: "shop", RetryTokens: 10, Pools: []upstream.PoolStatus{{Name: "primary", Origins: []upstream.OriginStatus{
			{URL: "http://10.0.0.1:8080", Weight: 1, State: upstream.StateHealthy, LatencyEWMAms: 12.5, Inflight: 3, Requests: req, Failures: 1,
				ErrorRate: 0.001, LastCheck: &checked, LastCheckOK: true},
			{URL: downURL, Weight: 1, State: upstream.StateUnhealthy, Requests: 50, Failures: 50, ErrorRate: 1,
				LastCheck: &checked, LastCheckError: "dial tcp 10.0.0.2:8080: connect: connection refused", ConsecutiveFailures: 5},
		}}}}},
		Cache:   &cache.Stats{MemoryObjects: 420, MemoryBytes: 12 << 20, Hits: 700 + 30*n, Misses: 300 + 10*n},
		Bundle:  st,
		Traffic: proxy.Health{Requests: req, Responses: [5]uint64{0, 900 + 35*n, 20, 70 + 4*n, 10 + n}, StageFailures: 3},
	}
}

// chromium returns the path of a Chromium to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium or chromium-browser in PATH: the dashboard's browser test needs one (apt-get install chromium)")
	return ""
}

// console collects what a tab writes to its console, for failures to report.
type console struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func watchConsole(ctx context.Context) *console {
	c := &console{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *console) problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
			out = append(out, string(m.Type)+": "+m.Text+" ("+m.URL+")")
		}
	}
	return out
}

// TestDashboardInBrowser drives the page in headless Chromium against a fake node.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	start := time.Now()
	f := &fakeNode{startedAt: time.Now().Add(-90 * time.Minute)}
	srv := httptest.NewServer(f.handler())
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", exe, err)
	}

	// A tab with the right token in the fragment.
	tab, cancelTab := chromedp.NewContext(browser)
	defer cancelTab()
	con := watchConsole(tab)
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/dashboard/#token="+goodToken)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "3 member rows", `document.querySelectorAll("#members tbody tr").length === 3`)
	if f.polls.Load() == 0 {
		t.Fatal("the page got a status without sending the token from the fragment")
	}
	if loc, _ := chromedp.Run(tab, chromedp.Location()); strings.Contains(loc, goodToken) {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	waitFor(t, tab, "requests/s > 0", `parseFloat(document.getElementById("rps").textContent.replace(/,/g, "")) > 0`)
	waitFor(t, tab, "a sparkline", `document.querySelector("#spark polyline") !== null`)

	checks := []struct{ what, expr string }{
		{"the down origin is marked", `[...document.querySelectorAll("#origins tbody tr")].some(r =>
			r.textContent.includes(` + jsString(downURL) + `) && r.classList.contains("down") && r.textContent.includes("unhealthy"))`},
		{"the healthy origin is not", `[...document.querySelectorAll("#origins tbody tr")].filter(r => r.classList.contains("down")).length === 1`},
		{"the kill switch is shown", `(t => t.includes("waf") && t.includes("shop"))(document.getElementById("switches").textContent)`},
		{"only the switch that is on", `document.querySelectorAll("#switches tbody tr").length === 1`},
		{"2 waves", `document.querySelectorAll("#rollout table:first-of-type tbody tr").length === 2`},
		{"this node's row", `document.querySelector("#members tbody tr.self").textContent.includes("this node")`},
		{"the dead member", `[...document.querySelectorAll("#members tbody tr")].some(r => r.classList.contains("down") && r.textContent.includes("edge-c"))`},
		{"the header", `(t => t.includes("serial 7") && t.includes("7a7a7a7a") && t.includes("eu-west"))(document.getElementById("facts").textContent)`},
		{"no DNS said plainly", `document.getElementById("dns").textContent === "no DNS on this node"`},
		{"a cache hit ratio", `/^\d+(\.\d)?%$/.test(document.querySelector("#cache tbody td").textContent)`},
		{"markup in data stays text", `document.querySelector("#refused script") === null && document.getElementById("refused").textContent.includes("<script>")`},
		{"live", `document.getElementById("conn").classList.contains("live")`},
	}
	for _, c := range checks {
		ok, err := chromedp.Run(tab, chromedp.Evaluate[bool](c.expr))
		if err != nil || !ok {
			t.Errorf("%s: %v, %v", c.what, ok, err)
		}
	}

	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, shot)
	if p := os.Getenv("DASHBOARD_SCREENSHOT"); p != "" {
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, p := range con.problems() {
		t.Errorf("console: %s", p) // a CSP violation or a script error shows here
	}

	// A tab with a wrong token: the page says so, and takes a pasted one.
	bad, cancelBad := chromedp.NewContext(browser)
	defer cancelBad()
	if err := chromedp.Do(bad, chromedp.Navigate(srv.URL+"/dashboard/#token=wrong")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bad, "the wrong-token message", `!document.getElementById("auth").hidden && document.getElementById("auth-why").textContent.includes("wrong")`)
	if f.refused.Load() == 0 {
		t.Error("the wrong token never reached the server")
	}
	if err := chromedp.Do(bad,
		chromedp.SendKeys(chromedp.ID("auth-token"), goodToken),
		chromedp.Click(chromedp.CSS("#auth-form button")),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bad, "the pasted token works", `document.getElementById("auth").hidden && document.querySelectorAll("#members tbody tr").length === 3`)

	// A proxy-mode node: no mesh, no cache, no traffic figures. Each section says so.
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status" {
			_ = json.NewEncoder(w).Encode(admin.Status{Uptime: "3s"})
			return
		}
		http.StripPrefix("/dashboard", dashboard.Handler()).ServeHTTP(w, r)
	}))
	defer bare.Close()
	plain, cancelPlain := chromedp.NewContext(browser)
	defer cancelPlain()
	plainCon := watchConsole(plain)
	if err := chromedp.Do(plain, chromedp.Navigate(bare.URL+"/dashboard/#token=any")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, plain, "a proxy-mode page", `document.getElementById("conn").classList.contains("live")`)
	for id, want := range map[string]string{
		"members": "not a mesh node", "rollout": "no rollout in progress", "cache": "caching is off",
		"dns": "no DNS on this node", "origins": "no origins", "stages": "no request stages", "traffic-empty": "no traffic counters",
	} {
		if got, err := chromedp.Run(plain, chromedp.TextContent(chromedp.ID(id))); err != nil || !strings.Contains(got, want) {
			t.Errorf("proxy mode, #%s: %q, %v; want %q", id, got, err, want)
		}
	}
	for _, p := range plainCon.problems() {
		t.Errorf("console (proxy mode): %s", p)
	}

	// The node goes away: the last data stays, marked stale.
	f.down.Store(true)
	srv.CloseClientConnections()
	waitFor(t, bad, "the unreachable node", `document.body.classList.contains("stale") && document.getElementById("conn").textContent.includes("unreachable") && document.querySelectorAll("#members tbody tr").length === 3`)
	t.Logf("browser test took %v (%d good polls)", time.Since(start).Round(time.Millisecond), f.polls.Load())
}

// waitFor polls expr in the tab until it is true, for at most 10 s.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, body)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkScreenshot checks that shot is a PNG of a plausible size with something drawn on it.
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 400 || b.Dy() > 20000 {
		t.Errorf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	colours := map[[3]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			colours[rgb(img, x, y)] = true
		}
	}
	if len(colours) < 8 {
		t.Errorf("screenshot has %d colours in its samples: is it blank?", len(colours))
	}
}

func rgb(img image.Image, x, y int) [3]uint32 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint32{r >> 8, g >> 8, b >> 8}
}
