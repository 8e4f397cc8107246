package demo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Traffic is the demo's synthetic clients: people and crawlers, steered by the mesh's DNS
// like real ones. Each second it resolves the site at a live node's nameserver and sends
// its requests to the addresses answered; when a connection is refused (a node died and
// DNS has not caught up) it tries the next address, as browsers do.
type Traffic struct {
	m      *Mesh
	client *http.Client
	jobs   chan kind
	stopc  chan struct{}
	ctx    context.Context // cancelled by Stop: requests in flight end at once
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup

	addrs atomic.Pointer[[]string]

	mu       sync.Mutex
	outcomes map[string]uint64 // outcome -> requests
	byKind   map[string]uint64 // kind -> requests sent
	sent     atomic.Uint64
	retries  atomic.Uint64 // connections refused and tried again elsewhere
	dropped  atomic.Uint64 // not sent: every worker busy
	served   atomic.Uint64
	failed   atomic.Uint64 // 5xx or no node answered: what a user would call an outage
}

// kind is a kind of client, with its share of the traffic.
type kind struct {
	name   string
	weight int
}

var kinds = []kind{
	{"person", 70}, {"googlebot", 8}, {"gptbot", 6}, {"signed-crawler", 6}, {"attacker", 5}, {"script", 5},
}

func startTraffic(m *Mesh, rate int) *Traffic {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 500 * time.Millisecond}).DialContext,
		ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
	t := &Traffic{m: m, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, jobs: make(chan kind, 64),
		stopc: make(chan struct{}), outcomes: map[string]uint64{}, byKind: map[string]uint64{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.resolve()
	for range 16 {
		t.wg.Go(t.worker)
	}
	t.wg.Go(func() { t.generate(rate) })
	t.wg.Go(t.resolver)
	return t
}

// Stop ends the traffic: requests in flight are cancelled, idle connections closed.
func (t *Traffic) Stop() {
	t.once.Do(func() {
		close(t.stopc)
		t.cancel()
	})
	t.wg.Wait()
	t.client.CloseIdleConnections()
}

func (t *Traffic) generate(rate int) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	for {
		select {
		case <-t.stopc:
			close(t.jobs)
			return
		case <-tick.C:
		}
		x := rand.IntN(total)
		k := kinds[0]
		for _, c := range kinds {
			if x < c.weight {
				k = c
				break
			}
			x -= c.weight
		}
		select {
		case t.jobs <- k:
		default:
			t.dropped.Add(1)
		}
	}
}

func (t *Traffic) resolver() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.stopc:
			return
		case <-tick.C:
			t.resolve()
		}
	}
}

// resolve asks a live node's nameserver for the site, as a resolver would (trying the next
// nameserver when one does not answer).
func (t *Traffic) resolve() {
	c := &mdns.Client{Timeout: 300 * time.Millisecond}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(Site), mdns.TypeA)
	for i := range t.m.Members {
		if t.m.Members[i].Killed() {
			continue
		}
		in, _, err := c.Exchange(q, t.m.DNSAddr(i))
		if err != nil || in.Rcode != mdns.RcodeSuccess {
			continue
		}
		var addrs []string
		for _, rr := range in.Answer {
			if a, ok := rr.(*mdns.A); ok {
				addrs = append(addrs, net.JoinHostPort(a.A.String(), strconv.Itoa(t.m.port)))
			}
		}
		if len(addrs) > 0 {
			t.addrs.Store(&addrs)
			return
		}
	}
}

// Answer is the addresses the last DNS answer gave for the site.
func (t *Traffic) Answer() []string {
	if a := t.addrs.Load(); a != nil {
		return *a
	}
	return nil
}

func (t *Traffic) worker() {
	for k := range t.jobs {
		t.send(k)
	}
}

func (t *Traffic) send(k kind) {
	addrs := t.Answer()
	if len(addrs) == 0 {
		t.count(k.name, "no DNS answer", false)
		return
	}
	start := rand.IntN(len(addrs))
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		req, err := t.request(k, addr)
		if err != nil {
			t.count(k.name, "client bug: "+err.Error(), false)
			return
		}
		resp, err := t.client.Do(req)
		if err != nil && t.ctx.Err() != nil {
			return // stopped: not an outcome
		}
		if err != nil {
			// A GET is safe to send again: a node that died (refused, reset) is skipped for
			// the next address of the answer, as browsers do.
			if i+1 < len(addrs) {
				t.retries.Add(1)
				continue
			}
			t.count(k.name, "no node answered", false)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.count(k.name, outcome(resp), resp.StatusCode < 500)
		return
	}
	t.count(k.name, "no node answered", false)
}

// outcome names what a response was, from its status and Cache-Status detail.
func outcome(resp *http.Response) string {
	detail := ""
	if cs := resp.Header.Get("Cache-Status"); cs != "" {
		if _, d, ok := strings.Cut(cs, "detail="); ok {
			detail = strings.Trim(strings.SplitN(d, ";", 2)[0], `"`)
		}
	}
	switch {
	case resp.StatusCode < 400:
		return "served"
	case resp.StatusCode == http.StatusForbidden && strings.HasPrefix(detail, "waf:"):
		return "blocked by the WAF"
	case resp.StatusCode == http.StatusForbidden && strings.HasPrefix(detail, "bots:"):
		return "blocked by bot policy (" + strings.TrimPrefix(detail, "bots:") + ")"
	case resp.StatusCode == http.StatusTooManyRequests:
		return "rate limited"
	case resp.StatusCode >= 500 && detail != "":
		return fmt.Sprintf("%d %s", resp.StatusCode, detail)
	default:
		return strconv.Itoa(resp.StatusCode)
	}
}

func (t *Traffic) count(k, outcome string, ok bool) {
	t.sent.Add(1)
	if ok {
		t.served.Add(1)
	} else {
		t.failed.Add(1)
	}
	t.mu.Lock()
	t.outcomes[outcome]++
	t.byKind[k]++
	t.mu.Unlock()
}

// request builds one request of a kind to a node's address. Clients are told apart by
// X-Forwarded-For (the demo's site trusts loopback as its balancer), so that each kind
// comes from its own part of the internet.
func (t *Traffic) request(k kind, addr string) (*http.Request, error) {
	path := []string{"/", "/hello", "/time", "/tagged/" + strconv.Itoa(rand.IntN(20))}[rand.IntN(4)]
	from := fmt.Sprintf("198.51.100.%d", 1+rand.IntN(250))
	ua := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	browser := true
	switch k.name {
	case "googlebot":
		from, ua, browser = fmt.Sprintf("66.249.66.%d", 1+rand.IntN(250)), "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", false
	case "gptbot":
		from, ua, browser = fmt.Sprintf("203.0.113.%d", 1+rand.IntN(250)), "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; +https://openai.com/gptbot)", false
	case "signed-crawler":
		from, ua, browser = "192.0.2.7", "DemoCrawler/1.0", false
	case "attacker":
		path = "/tagged/1?id=" + url.QueryEscape("1' OR '1'='1")
	case "script":
		ua, browser = "python-requests/2.32.3", false
	}
	req, err := http.NewRequestWithContext(t.ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Host = Site
	req.Header.Set("User-Agent", ua)
	req.Header.Set("X-Forwarded-For", from)
	if browser {
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Accept-Language", "en-GB,en;q=0.8")
	}
	if k.name == "signed-crawler" {
		if err := t.m.crawler.sign(req); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// Counts is the traffic's figures so far.
type Counts struct {
	Sent, Served, Failed, Retries, Dropped uint64
	Outcomes                               map[string]uint64
	ByKind                                 map[string]uint64
}

// Counts returns the traffic's figures so far.
func (t *Traffic) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Counts{Sent: t.sent.Load(), Served: t.served.Load(), Failed: t.failed.Load(), Retries: t.retries.Load(), Dropped: t.dropped.Load(),
		Outcomes: maps.Clone(t.outcomes), ByKind: maps.Clone(t.byKind)}
}

// Lines formats outcomes largest first.
func (c Counts) Lines() []string {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	for k, v := range c.Outcomes {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var out []string
	for _, e := range all {
		out = append(out, fmt.Sprintf("%-40s %d", e.k, e.v))
	}
	return out
}
