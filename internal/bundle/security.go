package bundle

import (
	"fmt"
	"time"

	"rhizome/internal/ratelimit"
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
	}
	return errs
}
