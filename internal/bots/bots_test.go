package bots

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers from tables; a missing entry is NXDOMAIN, "timeout" fails to answer.
type fakeResolver struct {
	ptr     map[string][]string
	fwd     map[string][]string
	lookups atomic.Int64
	delay   time.Duration
}

func (f *fakeResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	f.lookups.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	names, ok := f.ptr[addr]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
	}
	if len(names) == 1 && names[0] == "timeout" {
		return nil, &net.DNSError{Err: "i/o timeout", Name: addr, IsTimeout: true}
	}
	return names, nil
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f.fwd[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

var testResolver = &fakeResolver{
	ptr: map[string][]string{
		"66.249.66.1":  {"crawl-66-249-66-1.googlebot.com."},
		"192.0.2.66":   {"crawl-fake.googlebot.com.evil.example."},
		"198.51.100.7": {"timeout"},
		"192.0.2.99":   {"crawl-66-249-66-1.googlebot.com."}, // PTR claims Google, forward says otherwise
	},
	fwd: map[string][]string{
		"crawl-66-249-66-1.googlebot.com.":       {"66.249.66.1"},
		"crawl-fake.googlebot.com.evil.example.": {"192.0.2.66"},
	},
}

func browser(r *http.Request) *http.Request {
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	r.Header.Set("Accept-Encoding", "gzip, br")
	return r
}

func req(ua, from string) *http.Request {
	r := httptest.NewRequest("GET", "http://shop.example/page", nil)
	r.RemoteAddr = net.JoinHostPort(from, "40000")
	if ua != "" {
		r.Header.Set("User-Agent", ua)
	}
	return r
}

func testList() []Crawler {
	return Merge(Builtin(), []Crawler{
		{Name: "RangeBot", Category: "ai-search", UserAgents: []string{"RangeBot"}, IPRanges: []string{"203.0.113.0/24", "2001:db8::/32"}},
	})
}

func newTestStage(t *testing.T, p Policy) *Stage {
	t.Helper()
	s := NewStage(Options{Resolver: testResolver})
	set, err := NewSet(testList(), map[string]SiteConfig{"shop": {Policy: p}})
	if err != nil {
		t.Fatal(err)
	}
	s.Use(set)
	return s
}

func TestBuiltinListIsValid(t *testing.T) {
	list := Builtin()
	if len(list) < 30 {
		t.Fatalf("builtin list has %d crawlers", len(list))
	}
	if errs := ValidateCrawlers("crawlers", list); len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestClassifyAndDecide(t *testing.T) {
	p := Policy{Rules: []Rule{
		{Crawler: "Googlebot", Verified: true, Action: Allow},
		{Category: "ai-training", Action: Block},
		{Category: Automated, Action: Block},
	}}
	s := newTestStage(t, p)
	cases := []struct {
		name     string
		r        *http.Request
		class    Class
		blocked  bool
		reason   string
		minScore int
	}{
		{"browser", browser(req("", "192.0.2.1")), Class{Category: Human}, false, "", 80},
		{"curl", req("curl/8.5.0", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"python", req("python-requests/2.31.0", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"no user agent", req("", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"unknown bot word", req("Mozilla/5.0 (compatible; FooCrawler/1.0)", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"bare browser UA, no headers", req("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"GPTBot", req("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; +https://openai.com/gptbot)", "192.0.2.1"),
			Class{Crawler: "GPTBot", Category: "ai-training"}, true, "bots:GPTBot", 0},
		{"ClaudeBot case-insensitive", req("Mozilla/5.0 (compatible; claudebot/1.0; +claudebot@anthropic.com)", "192.0.2.1"),
			Class{Crawler: "ClaudeBot", Category: "ai-training"}, true, "bots:ClaudeBot", 0},
		{"Googlebot verified by DNS", req("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "66.249.66.1"),
			Class{Crawler: "Googlebot", Category: "search", Verified: true, Method: MethodRDNS}, false, "", 0},
		{"Googlebot PTR elsewhere", req("Mozilla/5.0 (compatible; Googlebot/2.1)", "192.0.2.66"),
			Class{Crawler: "Googlebot", Category: "search", Spoofed: true, Method: MethodRDNS}, true, "bots:spoofed:Googlebot", 0},
		{"Googlebot no PTR", req("Googlebot/2.1", "192.0.2.5"),
			Class{Crawler: "Googlebot", Category: "search", Spoofed: true, Method: MethodRDNS}, true, "bots:spoofed:Googlebot", 0},
		{"Googlebot forward mismatch", req("Googlebot/2.1", "192.0.2.99"),
			Class{Crawler: "Googlebot", Category: "search", Spoofed: true, Method: MethodRDNS}, true, "bots:spoofed:Googlebot", 0},
		{"Googlebot DNS failing: unverified, not spoofed", req("Googlebot/2.1", "198.51.100.7"),
			Class{Crawler: "Googlebot", Category: "search", Unverified: true, Method: MethodRDNS}, true, "bots:unverified:Googlebot", 0},
		{"script naming an unverifiable crawler", req("curl/8.0 DuckDuckBot/1.1", "192.0.2.1"), Class{Category: Automated}, true, "bots:automated", 0},
		{"unverifiable crawler", req("DuckDuckBot/1.1", "192.0.2.1"), Class{Crawler: "DuckDuckBot", Category: "search"}, false, "", 0},
		{"range crawler inside", req("RangeBot/1.0", "203.0.113.9"), Class{Crawler: "RangeBot", Category: "ai-search", Verified: true, Method: MethodIPRange}, false, "", 0},
		{"range crawler inside v6", req("RangeBot/1.0", "2001:db8::5"), Class{Crawler: "RangeBot", Category: "ai-search", Verified: true, Method: MethodIPRange}, false, "", 0},
		{"range crawler outside", req("RangeBot/1.0", "192.0.2.1"), Class{Crawler: "RangeBot", Category: "ai-search", Spoofed: true, Method: MethodIPRange}, true, "bots:spoofed:RangeBot", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := s.set.Load()
			c := s.classify(context.Background(), tc.r, set, set.sites["shop"])
			got := c
			got.Score = 0
			if got != tc.class {
				t.Fatalf("class %+v, want %+v", c, tc.class)
			}
			if c.Score < tc.minScore {
				t.Fatalf("score %d, want >= %d", c.Score, tc.minScore)
			}
			v, err := s.Check(context.Background(), tc.r, "shop")
			if err != nil || v.Block != tc.blocked || v.Reason != tc.reason {
				t.Fatalf("verdict %+v err %v, want blocked %v reason %q", v, err, tc.blocked, tc.reason)
			}
		})
	}
	if st := s.Stats(); st[Spoofed].Blocked == 0 || st["search"].Verified == 0 || st[Human].Seen == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSiteWithoutPolicyAndRobotsAreLeftAlone(t *testing.T) {
	s := newTestStage(t, Policy{Rules: []Rule{{Category: Automated, Action: Block}}})
	if v, _ := s.Check(context.Background(), req("curl/8", "192.0.2.1"), "other-site"); v.Block {
		t.Fatal("a site without a bot policy was judged")
	}
	r := req("curl/8", "192.0.2.1")
	r.URL.Path = "/robots.txt"
	if v, _ := s.Check(context.Background(), r, "shop"); v.Block {
		t.Fatal("robots.txt refused to a bot: it could never learn it is blocked")
	}
}

// TestSlowDNS: a claim whose reverse DNS answers after MaxWait is unverified for that
// request (the site's unverified action: block by default, so a spoofer cannot pass by
// making its reverse zone slow); the lookup goes on, its answer is cached for the next
// request, and a flood from one address makes one lookup.
func TestSlowDNS(t *testing.T) {
	for _, unverified := range []string{"", Allow} {
		res := &fakeResolver{ptr: testResolver.ptr, fwd: testResolver.fwd, delay: MaxWait + 300*time.Millisecond}
		s := NewStage(Options{Resolver: res})
		set, err := NewSet(testList(), map[string]SiteConfig{"shop": {Policy: Policy{Unverified: unverified}}})
		if err != nil {
			t.Fatal(err)
		}
		s.Use(set)
		r := req("Googlebot/2.1", "192.0.2.5") // no PTR: spoofed, once DNS says so
		start := time.Now()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				v, _ := s.Check(context.Background(), r, "shop")
				if v.Block != (unverified == "") || v.Block && v.Reason != "bots:unverified:Googlebot" {
					t.Errorf("unverified %q: %+v before DNS answered", unverified, v)
				}
			})
		}
		wg.Wait()
		if took := time.Since(start); took < MaxWait || took > MaxWait+250*time.Millisecond {
			t.Errorf("waited %s for DNS, want about MaxWait (%s)", took, MaxWait)
		}
		time.Sleep(400 * time.Millisecond)
		if v, _ := s.Check(context.Background(), r, "shop"); !v.Block || v.Reason != "bots:spoofed:Googlebot" {
			t.Fatalf("the answer found after the wait was not kept: %+v", v)
		}
		if n := res.lookups.Load(); n != 1 {
			t.Fatalf("%d lookups, want 1", n)
		}
	}
}

func TestManagedRobots(t *testing.T) {
	p := Policy{RobotsTxt: "managed", Rules: []Rule{
		{Category: "ai-training", Action: Block},
		{Crawler: "PerplexityBot", Verified: true, Action: Block}, // cannot be said in robots.txt
	}, ContentSignals: ContentSignals{Search: "yes", AITrain: "no"}}
	set, err := NewSet(Builtin(), map[string]SiteConfig{"shop": {Policy: p}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(set.sites["shop"].robots)
	for _, want := range []string{"Content-Signal: search=yes, ai-train=no\n", "User-agent: GPTBot\n", "User-agent: Google-Extended\n",
		"User-agent: anthropic-ai\n", "User-agent: CCBot\n", "Disallow: /\n", "# END rhizome managed section"} {
		if !strings.Contains(got, want) {
			t.Errorf("managed robots.txt lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"Googlebot", "PerplexityBot", "ChatGPT-User"} {
		if strings.Contains(got, "User-agent: "+not+"\n") {
			t.Errorf("managed robots.txt disallows %s, which the policy does not block:\n%s", not, got)
		}
	}
	s := NewStage(Options{})
	s.Use(set)
	if s.RobotsTxt("shop") == nil || s.RobotsTxt("other") != nil {
		t.Fatal("RobotsTxt by site")
	}
}

func TestValidate(t *testing.T) {
	list := Builtin()
	cases := []struct {
		p    Policy
		want string
	}{
		{Policy{Rules: []Rule{{Category: "ai-training", Action: "charge"}}}, "sites[0].bots.rules[0].action: charge needs pay-per-crawl"},
		{Policy{Rules: []Rule{{Crawler: "NoSuchBot", Action: Block}}}, `sites[0].bots.rules[0].crawler: "NoSuchBot": not in the crawler list`},
		{Policy{Rules: []Rule{{Category: "robots", Action: Block}}}, `sites[0].bots.rules[0].category: "robots": want one of`},
		{Policy{Rules: []Rule{{Action: Block}}}, "sites[0].bots.rules[0]: name a crawler or a category"},
		{Policy{Rules: []Rule{{Category: "search"}}}, "sites[0].bots.rules[0].action: required"},
		{Policy{Rules: []Rule{{Category: Automated, Verified: true, Action: Allow}}}, "sites[0].bots.rules[0].verified: only crawlers"},
		{Policy{Spoofed: "maybe"}, `sites[0].bots.spoofed: "maybe": want allow or block`},
		{Policy{AutomatedBelow: 100}, "sites[0].bots.automated_below: 100"},
		{Policy{RobotsTxt: "yes"}, `sites[0].bots.robots_txt: "yes"`},
		{Policy{ContentSignals: ContentSignals{AITrain: "nope"}}, "sites[0].bots.content_signals.ai_train"},
	}
	for _, tc := range cases {
		errs := tc.p.Validate("sites[0].bots", list)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%+v: errors %v, want one containing %q", tc.p, errs, tc.want)
		}
	}
	many := make([]Crawler, MaxCrawlers*2)
	if errs := ValidateCrawlers("crawlers.list", many); len(errs) != 1 || !strings.Contains(errs[0].Error(), "2000 crawlers: at most 1000") {
		t.Errorf("a list twice the limit: %v", errs)
	}
	bad := []Crawler{
		{Name: "a b", Category: "search", UserAgents: []string{"x"}},
		{Name: "X", Category: "nope", UserAgents: []string{"x y"}, IPRanges: []string{"10.0.0.0/33"}, SignatureAgents: []string{"http://x.example"}, ReverseDNS: []string{".bad"}},
		{Name: "x", Category: "search"},
	}
	errs := ValidateCrawlers("crawlers.list", bad)
	joined := errors.Join(errs...).Error()
	for _, want := range []string{`crawlers.list[0].name: "a b"`, `crawlers.list[1].category: "nope"`, `crawlers.list[1].user_agents[0]: "x y"`,
		`crawlers.list[1].ip_ranges[0]: "10.0.0.0/33"`, `crawlers.list[1].signature_agents[0]: "http://x.example": want an https origin`,
		`crawlers.list[1].reverse_dns[0]: ".bad"`, `crawlers.list[2].name: "x" listed twice`, "crawlers.list[2].user_agents: required"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors lack %q:\n%s", want, joined)
		}
	}
}

// TestTooManyLookups: with every lookup slot taken, a claim is unverified at once (not
// waited for, not allowed).
func TestTooManyLookups(t *testing.T) {
	res := &fakeResolver{ptr: map[string][]string{}, delay: 2 * time.Second}
	s := NewStage(Options{Resolver: res})
	set, _ := NewSet(testList(), map[string]SiteConfig{"shop": {Policy: Policy{}}})
	s.Use(set)
	var wg sync.WaitGroup
	for i := range maxRDNSInFlight {
		wg.Go(func() { s.Check(context.Background(), req("Googlebot/2.1", fmt.Sprintf("192.0.2.%d", i+1)), "shop") })
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	v, _ := s.Check(context.Background(), req("Googlebot/2.1", "198.51.100.200"), "shop")
	if !v.Block || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("%+v after %s with every lookup slot taken", v, time.Since(start))
	}
	wg.Wait()
}

func FuzzClassify(f *testing.F) {
	for _, ua := range []string{"", "curl/8", "Googlebot/2.1", "Mozilla/5.0 (compatible; GPTBot/1.1)", strings.Repeat("a/", 5000), "\x00\xff(((;;;"} {
		f.Add(ua, "192.0.2.1:1", "sig1=(\"@authority\")")
	}
	s := NewStage(Options{Resolver: &fakeResolver{}})
	set, _ := NewSet(testList(), map[string]SiteConfig{"shop": {Policy: Policy{Rules: []Rule{{Category: Automated, Action: Block}}}}})
	s.Use(set)
	f.Fuzz(func(t *testing.T, ua, remote, sigInput string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("User-Agent", ua)
		r.Header.Set("Signature-Input", sigInput)
		r.Header.Set("Signature-Agent", `"https://unlisted.example"`) // listed agents would be fetched
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		s.Check(ctx, r, "shop")
	})
}

func BenchmarkCheckBrowser(b *testing.B) {
	s := NewStage(Options{Resolver: testResolver})
	set, _ := NewSet(Builtin(), map[string]SiteConfig{"shop": {Policy: Policy{Rules: []Rule{{Category: "ai-training", Action: Block}, {Category: Automated, Action: Block}}}}})
	s.Use(set)
	r := browser(req("", "192.0.2.1"))
	b.ReportAllocs()
	for b.Loop() {
		s.Check(context.Background(), r, "shop")
	}
}
