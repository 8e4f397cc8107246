package bundle

import (
	"fmt"
	"slices"
	"time"

	"rhizome/internal/ratelimit"
	"rhizome/internal/stages"
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
	Budget     Duration `yaml:"budget" json:"budget,omitempty"`           // per request, 1ms..1s; default 50ms
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
			if b := time.Duration(m.Budget); b != 0 && (b < time.Millisecond || b > time.Second) {
				errs = append(errs, fmt.Errorf("%s.budget: %s: want 1ms..1s (0 for the default 50ms)", p, b))
			}
		}
	}
	return errs
}
