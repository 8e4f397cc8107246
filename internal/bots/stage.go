package bots

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"rhizome/internal/botauth"
	"rhizome/internal/clientip"
	"rhizome/internal/stages"
)

// SiteConfig is one site's bot settings as the stage runs them.
type SiteConfig struct {
	Policy         Policy
	TrustedProxies []netip.Prefix
}

// Set is the crawler list and every site's policy, compiled together. Immutable.
type Set struct {
	list  *List
	sites map[string]*siteState
}

type siteState struct {
	policy         Policy
	trusted        []netip.Prefix
	automatedBelow int
	robots         []byte // the managed robots.txt block; nil when the origin's is left alone
}

// NewSet compiles a list and the sites' policies (sites absent from the map are not
// classified at all).
func NewSet(list []Crawler, sites map[string]SiteConfig) (*Set, error) {
	l, err := Compile(list)
	if err != nil {
		return nil, err
	}
	s := &Set{list: l, sites: map[string]*siteState{}}
	for name, sc := range sites {
		if errs := sc.Policy.Validate("sites."+name+".bots", list); len(errs) > 0 {
			return nil, errs[0]
		}
		st := &siteState{policy: sc.Policy, trusted: sc.TrustedProxies, automatedBelow: sc.Policy.AutomatedBelow}
		if st.automatedBelow == 0 {
			st.automatedBelow = 30
		}
		if sc.Policy.RobotsTxt == "managed" {
			st.robots = managedRobots(name, &sc.Policy, l)
		}
		s.sites[name] = st
	}
	return s, nil
}

// Options configure the stage.
type Options struct {
	// Resolver verifies crawlers by reverse-and-forward DNS; default net.DefaultResolver.
	Resolver Resolver
	// DirectoryClient fetches Web Bot Auth key directories; default botauth's.
	DirectoryClient *http.Client
	// AllowPrivate lets key directories live on private or loopback addresses (tests, demo).
	AllowPrivate bool
	Logger       *slog.Logger
	Now          func() time.Time // default time.Now
}

// Stage is the bot request stage (stages.Stage and stages.Inline).
type Stage struct {
	set      atomic.Pointer[Set]
	verifier *botauth.Verifier
	rdns     *rdnsCache
	now      func() time.Time
	log      *slog.Logger
	counts   map[string]*classCount
	waiting  atomic.Int64 // requests waiting for DNS or a key directory
}

type classCount struct{ seen, blocked, verified atomic.Uint64 }

// NewStage returns a stage with no sites (every request passes until Use).
func NewStage(o Options) *Stage {
	s := &Stage{now: o.Now, log: o.Logger, counts: map[string]*classCount{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	res := o.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	s.rdns = newRDNSCache(res, s.now)
	dir := botauth.NewDirectory(botauth.DirectoryOptions{Client: o.DirectoryClient, AllowPrivate: o.AllowPrivate, Allowed: func(agent string) bool {
		set := s.set.Load()
		if set == nil {
			return false
		}
		n, err := NormalizeAgent(agent)
		if err != nil {
			return false
		}
		_, ok := set.list.agents[n]
		return ok
	}})
	s.verifier = &botauth.Verifier{Directory: dir}
	for _, c := range append(append([]string(nil), Categories...), Automated, Human, Spoofed, Unverified) {
		s.counts[c] = &classCount{}
	}
	s.Use(nil)
	return s
}

// Use swaps in a compiled set (a new bundle); nil: no site is classified.
func (s *Stage) Use(set *Set) {
	if set == nil {
		set = &Set{list: emptyList(), sites: map[string]*siteState{}}
	}
	s.set.Store(set)
}

func emptyList() *List { return &List{byToken: map[string]int{}, agents: map[string]int{}} }

// Name implements stages.Stage.
func (s *Stage) Name() string { return "bots" }

// Inline implements stages.Inline: the check always runs on the request's goroutine. It
// waits for the network only for a claim it must verify and has no cached answer for, and
// then at most MaxWait: the lookup goes on in the background and its answer is cached, so
// that the next request from that address is decided at once.
func (s *Stage) Inline() bool { return true }

// MaxWaiting bounds the requests waiting at once for a verification: past it a claim is
// unverified at once (the site's unverified action), so that a flood of claims from
// addresses with slow reverse zones holds no more than this many requests.
const MaxWaiting = 256

// wait takes a waiting slot; the caller gives it back with s.waiting.Add(-1).
func (s *Stage) wait() bool {
	if s.waiting.Add(1) > MaxWaiting {
		s.waiting.Add(-1)
		return false
	}
	return true
}

// MaxWait bounds how long one request waits for a DNS answer or a key directory. A claim
// still unverified after it gets the site's `unverified` action: a spoofer must not pass by
// making its own reverse zone slow.
const MaxWait = 500 * time.Millisecond

// DefaultBudget implements stages.Budgeter: room for MaxWait, so that waiting for a
// verification never counts as the stage failing.
func (s *Stage) DefaultBudget() time.Duration { return 2 * MaxWait }

// Check implements stages.Stage: classify, then apply the site's policy.
func (s *Stage) Check(ctx context.Context, r *http.Request, site string) (stages.Verdict, error) {
	set := s.set.Load()
	st := set.sites[site]
	if st == nil {
		return stages.Verdict{}, nil
	}
	if r.URL.Path == "/robots.txt" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// robots.txt stays readable to every crawler: it is how a blocked one learns it is.
		return stages.Verdict{}, nil
	}
	c := s.classify(ctx, r, set, st)
	action, _ := st.policy.decide(c)
	key := c.Category
	switch {
	case c.Spoofed:
		key = Spoofed
	case c.Unverified:
		key = Unverified
	}
	cc := s.counts[key]
	if cc != nil {
		cc.seen.Add(1)
		if c.Verified {
			cc.verified.Add(1)
		}
	}
	if action != Block {
		return stages.Verdict{}, nil
	}
	if cc != nil {
		cc.blocked.Add(1)
	}
	reason := "bots:" + c.Category
	switch {
	case c.Spoofed:
		reason = "bots:spoofed:" + c.Crawler
	case c.Unverified:
		reason = "bots:unverified:" + c.Crawler
	case c.Crawler != "":
		reason = "bots:" + c.Crawler
	}
	return stages.Verdict{Block: true, Status: http.StatusForbidden, Reason: reason}, nil
}

// classify says what a request is, for a site's settings in set.
func (s *Stage) classify(ctx context.Context, r *http.Request, set *Set, st *siteState) Class {
	l := set.list
	ua := r.Header.Get("User-Agent")
	f := l.scanUA(ua)
	if len(r.Header["Signature-Input"]) > 0 {
		if c, ok := s.bySignature(ctx, r, l); ok {
			return c
		}
	}
	if f.crawler < 0 {
		sc := score(r, ua, f)
		if sc < st.automatedBelow {
			return Class{Category: Automated, Score: sc}
		}
		return Class{Category: Human, Score: sc}
	}
	cr := &l.crawlers[f.crawler]
	c := Class{Crawler: cr.Name, Category: cr.Category, Score: 1}
	hasRanges, hasDNS := len(l.ranges[f.crawler]) > 0, len(l.domains[f.crawler]) > 0
	if !hasRanges && !hasDNS {
		// Nothing to check the claim against. An HTTP library naming a crawler as well is
		// a script, not the crawler: "curl/8 DuckDuckBot/1.1" must not escape "automated".
		if f.automated {
			return Class{Category: Automated, Score: score(r, ua, f)}
		}
		return c
	}
	a := clientip.Addr(r, st.trusted)
	if hasRanges {
		if l.inRanges(f.crawler, a) {
			c.Verified, c.Method = true, MethodIPRange
			return c
		}
		if !hasDNS {
			c.Spoofed, c.Method = true, MethodIPRange
			return c
		}
	}
	c.Method = MethodRDNS
	res, ok := s.rdns.cached(a)
	if !ok && s.wait() {
		wctx, cancel := context.WithTimeout(ctx, MaxWait)
		res, ok = s.rdns.lookup(wctx, a)
		cancel()
		s.waiting.Add(-1)
	}
	switch {
	case ok && l.nameMatches(f.crawler, res.names):
		c.Verified = true
	case ok && res.settled:
		c.Spoofed = true
	default:
		c.Unverified = true // DNS failed, too slow, or too many lookups running
	}
	return c
}

// bySignature classifies a request carrying a Web Bot Auth signature that names an agent on
// the list; ok is false when it names none (the signature then says nothing either way).
func (s *Stage) bySignature(ctx context.Context, r *http.Request, l *List) (Class, bool) {
	agent, ok := botauth.ClaimedAgent(r)
	if !ok {
		return Class{}, false
	}
	idx, known := l.agents[agent]
	if !known {
		return Class{}, false
	}
	cr := &l.crawlers[idx]
	c := Class{Crawler: cr.Name, Category: cr.Category, Method: MethodSignature, Score: 1}
	if !s.wait() {
		c.Unverified = true
		return c, true
	}
	defer s.waiting.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, MaxWait)
	defer cancel()
	id, err := s.verifier.Verify(wctx, r, s.now())
	switch {
	case err == nil && id.Agent == agent:
		c.Verified = true
	case err == nil, errors.Is(err, botauth.ErrInvalid), errors.Is(err, botauth.ErrExpired), errors.Is(err, botauth.ErrNoSignature):
		// Signed by another agent than it names, broken, expired, or not a Web Bot Auth
		// signature at all while naming a listed agent: the claim fails.
		s.log.Debug("web bot auth signature refused", "agent", agent, "err", err)
		c.Spoofed = true
	default:
		// The directory could not be fetched (yet), or does not list the key (yet).
		c.Unverified = true
	}
	return c, true
}

// ClassCounts are the requests the stage classified in one class since start.
type ClassCounts struct {
	Seen     uint64 `json:"seen"`
	Verified uint64 `json:"verified,omitempty"`
	Blocked  uint64 `json:"blocked"`
}

// Stats returns the counts by class: crawler categories, automated, human, spoofed.
func (s *Stage) Stats() map[string]ClassCounts {
	out := map[string]ClassCounts{}
	for k, c := range s.counts {
		if n := c.seen.Load(); n > 0 {
			out[k] = ClassCounts{Seen: n, Verified: c.verified.Load(), Blocked: c.blocked.Load()}
		}
	}
	return out
}

// Crawlers returns the crawler list in force (not to be modified).
func (s *Stage) Crawlers() []Crawler { return s.set.Load().list.crawlers }

// RobotsTxt returns the managed robots.txt block of a site, or nil when the site leaves
// robots.txt to its origin.
func (s *Stage) RobotsTxt(site string) []byte {
	if st := s.set.Load().sites[site]; st != nil {
		return st.robots
	}
	return nil
}
