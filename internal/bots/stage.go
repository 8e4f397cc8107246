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

// List returns the compiled crawler list.
func (s *Set) List() *List { return s.list }

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
	for _, c := range append(append([]string(nil), Categories...), Automated, Human, Spoofed) {
		s.counts[c] = &classCount{}
	}
	s.set.Store(&Set{list: &List{byToken: map[string]int{}, agents: map[string]int{}}, sites: map[string]*siteState{}})
	return s
}

// Use swaps in a compiled set (a new bundle).
func (s *Stage) Use(set *Set) {
	if set != nil {
		s.set.Store(set)
	}
}

// Name implements stages.Stage.
func (s *Stage) Name() string { return "bots" }

// Inline implements stages.Inline: the check runs on the request's goroutine unless it
// would wait on the network (a key directory or an address not verified yet).
func (s *Stage) Inline(r *http.Request, site string) bool {
	set := s.set.Load()
	st := set.sites[site]
	if st == nil {
		return true
	}
	if len(r.Header["Signature-Input"]) > 0 && s.verifier.NeedsFetch(r) {
		return false
	}
	f := set.list.scanUA(r.Header.Get("User-Agent"))
	if f.crawler < 0 || len(set.list.domains[f.crawler]) == 0 {
		return true
	}
	a := clientip.Addr(r, st.trusted)
	if set.list.inRanges(f.crawler, a) {
		return true
	}
	_, ok := s.rdns.cached(a)
	return ok
}

// maxWait bounds what a check waits for DNS or a key directory even when the driver gave
// it no deadline (an inline check whose cache entry expired between Inline and Check).
const maxWait = time.Second

// Check implements stages.Stage: classify, then apply the site's policy.
func (s *Stage) Check(ctx context.Context, r *http.Request, site string) (stages.Verdict, error) {
	set := s.set.Load()
	st := set.sites[site]
	if st == nil || r.URL.Path == "/robots.txt" {
		// robots.txt stays readable to every crawler: it is how a blocked one learns it is.
		return stages.Verdict{}, nil
	}
	c := s.classify(ctx, r, set, st)
	action, _ := st.policy.decide(c)
	key := c.Category
	if c.Spoofed {
		key = Spoofed
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
		if c, ok := s.bySignature(ctx, r, l, f); ok {
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
	a := clientip.Addr(r, st.trusted)
	hasRanges, hasDNS := len(l.ranges[f.crawler]) > 0, len(l.domains[f.crawler]) > 0
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
	if hasDNS {
		res, ok := s.rdns.cached(a)
		if !ok {
			wctx, cancel := context.WithTimeout(ctx, maxWait)
			res, ok = s.rdns.lookup(wctx, a)
			cancel()
		}
		switch {
		case ok && l.nameMatches(f.crawler, res.names):
			c.Verified, c.Method = true, MethodRDNS
		case ok && res.settled:
			c.Spoofed, c.Method = true, MethodRDNS
		}
	}
	return c
}

// bySignature classifies a request carrying a Web Bot Auth signature from an agent on the
// list; ok is false when the signature says nothing either way (another agent, no key
// directory reachable, a key the directory does not list yet).
func (s *Stage) bySignature(ctx context.Context, r *http.Request, l *List, f uaFacts) (Class, bool) {
	agent, err := NormalizeAgent(unquote(r.Header.Get("Signature-Agent")))
	idx, known := l.agents[agent]
	if err != nil || !known {
		return Class{}, false
	}
	cr := &l.crawlers[idx]
	wctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	_, err = s.verifier.Verify(wctx, r, s.now())
	switch {
	case err == nil:
		return Class{Crawler: cr.Name, Category: cr.Category, Verified: true, Method: MethodSignature, Score: 1}, true
	case errors.Is(err, botauth.ErrInvalid), errors.Is(err, botauth.ErrExpired):
		s.log.Debug("web bot auth signature refused", "agent", agent, "err", err)
		return Class{Crawler: cr.Name, Category: cr.Category, Spoofed: true, Method: MethodSignature, Score: 1}, true
	}
	return Class{}, false
}

// unquote reads Signature-Agent, a structured-field string ("https://...") in the current
// drafts and a bare URL in older ones.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
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

// RobotsTxt returns the managed robots.txt block of a site, or nil when the site leaves
// robots.txt to its origin.
func (s *Stage) RobotsTxt(site string) []byte {
	if st := s.set.Load().sites[site]; st != nil {
		return st.robots
	}
	return nil
}
