package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"rhizome/internal/botauth"
	"rhizome/internal/bundle"
	"rhizome/internal/control"
)

// dnsTable is a resolver for the bot stage: PTR and forward names from tables.
type dnsTable struct{ ptr, fwd map[string]string }

func (d dnsTable) LookupAddr(_ context.Context, addr string) ([]string, error) {
	if n, ok := d.ptr[addr]; ok {
		return []string{n}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
}

func (d dnsTable) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := d.fwd[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

const securitySite = `    trusted_proxies: [127.0.0.0/8]
    waf: {paranoia: 1, exclusions: [{ids: [942100], path_prefix: /search-sql}]}
    bots:
      robots_txt: managed
      content_signals: {search: "yes", ai_train: "no"}
      rules:
        - {category: ai-training, action: block}
        - {category: automated, action: block}
`

// TestSecurityStagesFromTheBundle: the WAF, the bot policy and the managed robots.txt of a
// pushed bundle act on real requests through the node's listener.
func TestSecurityStagesFromTheBundle(t *testing.T) {
	op := newKey(t)
	boot := bootstrap(t, t.TempDir(), 1, op)
	boot.Bots.Resolver = dnsTable{
		ptr: map[string]string{"66.249.66.1": "crawl-66-249-66-1.googlebot.com."},
		fwd: map[string]string{"crawl-66-249-66-1.googlebot.com.": "66.249.66.1"},
	}
	n := start(t, boot)
	defer stop(t, n)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/robots.txt" {
			io.WriteString(w, "User-agent: *\nDisallow: /private/\n")
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok %s %d", r.Method, len(body))
	}))
	defer o.Close()
	if code, out := push(t, n, signed(t, append(source(1, o.URL), securitySite...), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	base := "http://" + n.Edge.Addr.String()
	do := func(method, path, ua, from, body string) (int, string, http.Header) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if ua == "browser" {
			ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Accept-Language", "en")
		}
		req.Header.Set("User-Agent", ua)
		if from != "" {
			req.Header.Set("X-Forwarded-For", from)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	cases := []struct {
		name, method, path, ua, from, body string
		code                               int
		detail                             string
	}{
		{"clean page", "GET", "/products?q=blue+shoes", "browser", "", "", 200, ""},
		{"clean form", "POST", "/login", "browser", "", "user=alice&password=" + url.QueryEscape("correct horse"), 200, ""},
		{"sql injection", "GET", "/products?id=" + url.QueryEscape("1' OR '1'='1"), "browser", "", "", 403, "waf:"},
		{"xss in body", "POST", "/comment", "browser", "", "text=" + url.QueryEscape("<script>alert(1)</script>"), 403, "waf:"},
		{"AI crawler blocked", "GET", "/", "Mozilla/5.0 (compatible; GPTBot/1.1; +https://openai.com/gptbot)", "", "", 403, "bots:GPTBot"},
		{"curl blocked as automated", "GET", "/", "curl/8.5.0", "", "", 403, "bots:automated"},
		{"Googlebot verified", "GET", "/", "Mozilla/5.0 (compatible; Googlebot/2.1)", "66.249.66.1", "", 200, ""},
		{"Googlebot spoofed", "GET", "/", "Mozilla/5.0 (compatible; Googlebot/2.1)", "203.0.113.9", "", 403, "bots:spoofed:Googlebot"},
	}
	for _, c := range cases {
		code, body, h := do(c.method, c.path, c.ua, c.from, c.body)
		if code != c.code || !strings.Contains(h.Get("Cache-Status"), c.detail) {
			t.Errorf("%s: %d %q (Cache-Status %q), want %d with %q", c.name, code, body, h.Get("Cache-Status"), c.code, c.detail)
		}
	}
	// The clean form reached the origin whole, after the WAF read it.
	if _, body, _ := do("POST", "/login", "browser", "", "user=alice&password=x"); body != "ok POST 21" {
		t.Errorf("origin saw %q", body)
	}
	code, robots, h := do("GET", "/robots.txt", "Mozilla/5.0 (compatible; GPTBot/1.1)", "", "")
	if code != 200 || !strings.Contains(robots, "Content-Signal: search=yes, ai-train=no") || !strings.Contains(robots, "User-agent: GPTBot\n") ||
		!strings.HasSuffix(strings.TrimSpace(robots), "Disallow: /private/") || h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("robots.txt: %d %q\n%s", code, h.Get("Content-Type"), robots)
	}
	st := n.Edge.Proxy.Health()
	if st.StageFailures != 0 {
		t.Fatalf("stage failures: %+v", st)
	}
	sg := n.State().Stages
	if sg == nil || sg.WAF.Blocked != 2 || sg.Driver["waf"].Blocks != 2 || sg.Bots["spoofed"].Blocked != 1 ||
		sg.Bots["search"].Verified != 1 || sg.Driver["bots"].Blocks != 3 {
		t.Fatalf("stage counters in status: %+v", sg)
	}
}

// TestBadSecuritySettingsRefused: bundles with a crawler list twice its limit, a WAF rule
// that does not exist or an action this release cannot take are refused with the field
// named, and the node keeps serving the bundle it had.
func TestBadSecuritySettingsRefused(t *testing.T) {
	op := newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 1, op))
	defer stop(t, n)
	o := origin(t, "v1")
	if code, out := push(t, n, signed(t, source(1, o), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	var big strings.Builder
	big.WriteString("crawlers:\n  list:\n")
	for i := range 2000 {
		fmt.Fprintf(&big, "    - {name: bot%d, category: ai-training, user_agents: [bot%d]}\n", i, i)
	}
	for _, c := range []struct{ name, extra, want string }{
		{"crawler list twice the limit", big.String(), "crawlers.list: 2000 crawlers: at most 1000"},
		{"unknown WAF rule", "    waf: {exclusions: [{ids: [1]}]}\n", "sites[0].waf.exclusions[0].ids[0]: 1: no such rule"},
		{"charge", "    bots: {rules: [{category: ai-training, action: charge}]}\n", "sites[0].bots.rules[0].action: charge needs pay-per-crawl"},
		{"paranoia", "    waf: {paranoia: 9}\n", "sites[0].waf.paranoia: 9"},
	} {
		src := string(source(2, o)) + c.extra
		// What `rhizome validate` and `bundle sign` say...
		if _, err := bundle.ParseSource([]byte(src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: validation said %v, want %q", c.name, err, c.want)
		}
		// ...and what a node says to a bundle signed without that check.
		var cfg bundle.Config
		if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
			t.Fatal(err)
		}
		code, out := push(t, n, signedUnchecked(t, &cfg, op))
		if code == 200 || !strings.Contains(out, c.want) {
			t.Errorf("%s: push %d %s, want a refusal naming %q", c.name, code, out, c.want)
		}
	}
	if code, body := get(t, n, "/"); code != 200 || body != "v1" {
		t.Fatalf("after the refusals: %d %q", code, body)
	}
}

// TestWebBotAuthThroughTheNode: a crawler on the bundle's list signs its requests (RFC 9421,
// Ed25519); the node fetches its key directory over TLS once, lets the signed requests
// through as verified, and refuses the same user agent unsigned or with a signature that
// does not verify.
func TestWebBotAuthThroughTheNode(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	var hits atomic.Int64
	dir := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", botauth.DirectoryMediaType)
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	}))
	defer dir.Close()
	agent := dir.URL // https://127.0.0.1:PORT

	op := newKey(t)
	boot := bootstrap(t, t.TempDir(), 1, op)
	boot.Bots.DirectoryClient = dir.Client()
	boot.Bots.AllowPrivate = true
	n := start(t, boot)
	defer stop(t, n)
	src := string(source(1, origin(t, "article"))) + `    bots:
      rules:
        - {crawler: TestAgent, verified: true, action: allow}
        - {category: ai-assistant, action: block}
crawlers:
  list:
    - {name: TestAgent, category: ai-assistant, user_agents: [TestAgent], signature_agents: ["` + agent + `"]}
`
	if code, out := push(t, n, signed(t, []byte(src), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	send := func(sign bool, tamper bool) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+n.Edge.Addr.String()+"/articles/1", nil)
		req.Header.Set("User-Agent", "TestAgent/1.0")
		req.Header.Set("Signature-Agent", `"`+agent+`"`)
		if sign {
			now := time.Now()
			p := botauth.Params{Created: now, Expires: now.Add(time.Minute), KeyID: botauth.Thumbprint(pub), Alg: "ed25519", Nonce: "n1", Tag: botauth.Tag}
			if err := botauth.Sign(req, "sig1", []string{"@authority", "signature-agent"}, p, priv); err != nil {
				t.Fatal(err)
			}
		}
		if tamper {
			req.Host = "other.example" // covered by @authority
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Cache-Status")
	}
	for i := range 5 {
		if code, cs := send(true, false); code != 200 {
			t.Fatalf("signed request %d: %d %s", i, code, cs)
		}
	}
	if code, cs := send(false, false); code != 403 || !strings.Contains(cs, "bots:TestAgent") {
		t.Fatalf("unsigned: %d %s", code, cs)
	}
	if code, cs := send(true, true); code != 403 || !strings.Contains(cs, "bots:spoofed:TestAgent") {
		t.Fatalf("tampered: %d %s", code, cs)
	}
	if h := hits.Load(); h != 1 {
		t.Fatalf("key directory fetched %d times, want once", h)
	}
	if st := n.bots.Stats()["ai-assistant"]; st.Verified != 5 {
		t.Fatalf("stats %+v", n.bots.Stats())
	}
}

// TestRollbackRestoresStageSettings: rolling back restores the previous bundle's stage
// settings along with its sites (they once stayed on the bad bundle's).
func TestRollbackRestoresStageSettings(t *testing.T) {
	op := newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 1, op))
	defer stop(t, n)
	o := origin(t, "ok")
	if code, out := push(t, n, signed(t, source(1, o), op)); code != 200 {
		t.Fatalf("push 1: %s", out)
	}
	b2 := signed(t, append(source(2, o), "    bots: {rules: [{category: automated, action: block}]}\n"...), op)
	if code, out := push(t, n, b2); code != 200 {
		t.Fatalf("push 2: %s", out)
	}
	if code, _ := get(t, n, "/"); code != 403 { // Go's client: automated
		t.Fatalf("bundle 2 should block the Go client: %d", code)
	}
	s, _ := bundle.Decode(b2)
	if code, out := sendControl(t, n, control.Record{Kind: control.KindRollback, Bundle: s.Hash(), At: time.Now().UnixMilli()}, op); code != 200 {
		t.Fatalf("rollback: %s", out)
	}
	waitFor(t, "serial 1 again", 5*time.Second, func() bool { return activeSerial(n) == 1 })
	if code, _ := get(t, n, "/"); code != 200 {
		t.Fatalf("after the rollback to bundle 1 (no bot policy) the Go client got %d", code)
	}
}
