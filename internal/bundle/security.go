package bundle

import (
	"fmt"
	"slices"
	"time"

	"rhizome/internal/bots"
	"rhizome/internal/bytesize"
	"rhizome/internal/ratelimit"
	"rhizome/internal/stages"
	"rhizome/internal/waf"
)

// RateLimit is one rate-limiting rule of a site: ratelimit.Rule. See docs/security.md.
type RateLimit struct {
	Name       string   `yaml:"name" json:"name,omitempty"`               // shown in logs and the 429's Cache-Status detail
	PathPrefix string   `yaml:"path_prefix" json:"path_prefix,omitempty"` // default: every path
	Methods    []string `yaml:"methods" json:"methods,omitempty"`         // default: every method
	Header     string   `yaml:"header" json:"header,omitempty"`           // only requests carrying this header
	Key        string   `yaml:"key" json:"key,omitempty"`                 // ip (default), ip/24, header:NAME, cookie:NAME
	Limit      int      `yaml:"limit" json:"limit,omitempty"`             // requests per period
	Period     Duration `yaml:"period" json:"period,omitempty"`           // 1s..1h
	Burst      int      `yaml:"burst" json:"burst,omitempty"`             // default: limit
	Action     string   `yaml:"action" json:"action,omitempty"`           // block (default: 429, Retry-After) or log
}

// StageMode is how one request stage runs for a site: stages.Mode.
type StageMode struct {
	Stage      string   `yaml:"stage" json:"stage,omitempty"`             // ratelimit, waf, bots, paycrawl
	FailClosed bool     `yaml:"fail_closed" json:"fail_closed,omitempty"` // refuse (403) when the stage fails; default: bypass it
	Budget     Duration `yaml:"budget" json:"budget,omitempty"`           // per request, 1ms..1s; default 50ms (WAF 500ms, bots 1s); for the inline stages of this release, the time past which a check counts as slow
}

// RateRules converts a site's rules for the ratelimit package.
func (s *Site) RateRules() []ratelimit.Rule {
	var out []ratelimit.Rule
	for _, r := range s.RateLimits {
		out = append(out, ratelimit.Rule{Name: r.Name, PathPrefix: r.PathPrefix, Methods: clone(r.Methods), Header: r.Header,
			Key: r.Key, Limit: r.Limit, Period: time.Duration(r.Period), Burst: r.Burst, Action: r.Action})
	}
	return out
}

// securityErr validates the security settings of every site.
func (c *Config) securityErr() []error {
	var errs []error
	for i := range c.Sites {
		if _, err := ratelimit.Compile(fmt.Sprintf("sites[%d].rate_limits", i), c.Sites[i].RateRules()); err != nil {
			errs = append(errs, err)
		}
		seen := map[string]bool{}
		for j, m := range c.Sites[i].StageModes {
			p := fmt.Sprintf("sites[%d].stage_modes[%d]", i, j)
			switch {
			case !slices.Contains(stages.Names, m.Stage):
				errs = append(errs, fmt.Errorf("%s.stage: %q: want one of %v", p, short(m.Stage), stages.Names))
			case seen[m.Stage]:
				errs = append(errs, fmt.Errorf("%s.stage: %q listed twice", p, m.Stage))
			}
			seen[m.Stage] = true
			switch b := time.Duration(m.Budget); {
			case b != 0 && (b < time.Millisecond || b > time.Second):
				errs = append(errs, fmt.Errorf("%s.budget: %s: want 1ms..1s (0 for the stage's default)", p, b))
			}
		}
	}
	return append(errs, c.botsErr()...)
}

// WAF is a site's web application firewall: waf.Config. See docs/security.md#waf. Its time
// budget is 500ms unless the site's stage_modes set another.
type WAF struct {
	Mode             string         `yaml:"mode" json:"mode,omitempty"`                           // block (default) or detect
	Paranoia         int            `yaml:"paranoia" json:"paranoia,omitempty"`                   // CRS paranoia level 1..4; default 1
	AnomalyThreshold int            `yaml:"anomaly_threshold" json:"anomaly_threshold,omitempty"` // inbound anomaly score that blocks; default 5
	Exclusions       []WAFExclusion `yaml:"exclusions" json:"exclusions,omitempty"`               // rules switched off
	BodyLimit        string         `yaml:"body_limit" json:"body_limit,omitempty"`               // request body bytes inspected, e.g. 64KiB; default 16KiB, at most 256KiB
	OverLimit        string         `yaml:"over_limit" json:"over_limit,omitempty"`               // reject (default: 413) or inspect_partial (bytes past body_limit are NOT inspected)
}

// WAFExclusion switches off Core Rule Set rules by id, everywhere or under a path prefix.
type WAFExclusion struct {
	IDs        []int  `yaml:"ids" json:"ids"`
	PathPrefix string `yaml:"path_prefix" json:"path_prefix,omitempty"`
}

// Crawlers is the bundle's crawler list: the release's built-in list (unless builtin is
// false) with List's entries added, an entry of the same name replacing the built-in one.
type Crawlers struct {
	Builtin *bool          `yaml:"builtin" json:"builtin,omitempty"` // default true
	List    []bots.Crawler `yaml:"list" json:"list,omitempty"`
}

// CrawlerList is the crawler list the bundle runs with.
func (c *Config) CrawlerList() []bots.Crawler {
	if c.Crawlers == nil {
		return bots.Builtin()
	}
	var base []bots.Crawler
	if c.Crawlers.Builtin == nil || *c.Crawlers.Builtin {
		base = bots.Builtin()
	}
	return bots.Merge(base, c.Crawlers.List)
}

// WAFConfig converts a site's WAF section; ok is false when the site has none. A body
// limit that does not parse becomes -1, which waf.Config.Validate refuses.
func (s *Site) WAFConfig() (waf.Config, bool) {
	if s.WAF == nil {
		return waf.Config{}, false
	}
	w := s.WAF
	c := waf.Config{Mode: w.Mode, Paranoia: w.Paranoia, AnomalyThreshold: w.AnomalyThreshold, OverLimit: w.OverLimit}
	for _, e := range w.Exclusions {
		c.Exclusions = append(c.Exclusions, waf.Exclusion{IDs: slices.Clone(e.IDs), PathPrefix: e.PathPrefix})
	}
	if w.BodyLimit != "" {
		n, err := bytesize.Parse(w.BodyLimit)
		if err != nil {
			n = -1
		}
		c.BodyLimit = n
	}
	return c, true
}

// botsErr validates the crawler list and every site's WAF and bot policy.
func (c *Config) botsErr() []error {
	var errs []error
	if c.Crawlers != nil {
		errs = append(errs, bots.ValidateCrawlers("crawlers.list", c.Crawlers.List)...)
	}
	list := c.CrawlerList()
	if len(errs) == 0 {
		// The merged list can still break a limit (built-in entries plus added ones).
		errs = append(errs, bots.ValidateCrawlers("crawlers", list)...)
	}
	wafs := map[string]waf.Config{}
	for i := range c.Sites {
		s := &c.Sites[i]
		if w, ok := s.WAFConfig(); ok && w.BodyLimit >= 0 {
			wafs[s.Name] = w
		}
		if s.Bots != nil {
			errs = append(errs, s.Bots.Validate(fmt.Sprintf("sites[%d].bots", i), list)...)
		}
		if w, ok := s.WAFConfig(); ok {
			if w.BodyLimit < 0 {
				errs = append(errs, fmt.Errorf("sites[%d].waf.body_limit: %q: want a size like 128KiB", i, short(s.WAF.BodyLimit)))
				w.BodyLimit = 0
			}
			errs = append(errs, w.Validate(fmt.Sprintf("sites[%d].waf", i))...)
		}
	}
	// Every distinct WAF configuration is a rule set each node compiles and holds (about
	// 2.5 MiB, 17 ms): a bundle must not be able to make that unbounded.
	if n := waf.DistinctEngines(wafs); n > waf.MaxEngines {
		errs = append(errs, fmt.Errorf("sites: %d distinct WAF configurations (paranoia, anomaly_threshold, body_limit, exclusions): at most %d; sites that differ only in mode or over_limit share one", n, waf.MaxEngines))
	}
	return errs
}
