package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"rhizome/internal/bots"
	"rhizome/internal/snapshot"
)

// Config is the operator's configuration as a bundle carries it: the YAML source decodes
// into it (yaml tags) and the signed body encodes it (json tags). Its fields mirror
// snapshot.Spec; their meaning, defaults and limits are documented there and in
// testdata/example.yaml. There are no maps anywhere below Config, so that encoding/json
// writes it in one order only.
type Config struct {
	// Serial numbers bundles: required, above 0, and nodes refuse a bundle whose serial is
	// not above the one they run, so it only goes up (a rollback is a new, higher serial).
	Serial uint64 `yaml:"serial" json:"serial"`
	Sites  []Site `yaml:"sites" json:"sites"`
	// Rollout is how the bundle spreads through the mesh (rollout.go); nil: everywhere at once.
	Rollout *Rollout `yaml:"rollout" json:"rollout,omitempty"`
	// DNS holds the zones the nodes serve as authoritative nameservers (dns.go); nil: none.
	DNS *DNS `yaml:"dns" json:"dns,omitempty"`
	// Crawlers extends or replaces the crawler list built into the release (security.go).
	Crawlers *Crawlers `yaml:"crawlers" json:"crawlers,omitempty"`
}

// Site is one site: snapshot.SiteSpec.
type Site struct {
	Name           string   `yaml:"name" json:"name,omitempty"`                       // required, unique; letters, digits, '-', '_', '.'
	Hosts          []string `yaml:"hosts" json:"hosts,omitempty"`                     // Host values answered; "*.example.com", "*" for all others
	Origins        []Origin `yaml:"origins" json:"origins,omitempty"`                 // short form of one pool "default"; or Pools, not both
	Pools          []Pool   `yaml:"pools" json:"pools,omitempty"`                     // tried in order; a later pool serves when the earlier ones have no origin up
	OriginHost     string   `yaml:"origin_host" json:"origin_host,omitempty"`         // Host sent to origins; default: the client's, passed through
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies,omitempty"` // CIDRs whose X-Forwarded-For is believed; default none
	// The sections below are always written (as {} when empty) rather than omitted, so that
	// a section holding only an empty list encodes the same way as an absent one.
	Cache    Cache    `yaml:"cache" json:"cache"`
	Timeouts Timeouts `yaml:"timeouts" json:"timeouts"`
	Retry    Retry    `yaml:"retry" json:"retry"`
	Outlier  Outlier  `yaml:"outlier" json:"outlier"`
	// RateLimits are the site's rate-limiting rules (security.go), checked in order.
	RateLimits []RateLimit `yaml:"rate_limits" json:"rate_limits,omitempty"`
	// StageModes choose fail open or closed and the time budget per stage (security.go).
	StageModes []StageMode `yaml:"stage_modes" json:"stage_modes,omitempty"`
	// WAF inspects requests with the OWASP Core Rule Set (security.go); nil: off.
	WAF *WAF `yaml:"waf" json:"waf,omitempty"`
	// Bots is the site's bot and AI-crawler policy (internal/bots); nil: not classified.
	Bots *bots.Policy `yaml:"bots" json:"bots,omitempty"`
}

// Pool is an ordered group of origins: snapshot.PoolSpec.
type Pool struct {
	Name        string       `yaml:"name" json:"name,omitempty"`                 // required, unique in the site
	Origins     []Origin     `yaml:"origins" json:"origins,omitempty"`           // at least one
	HealthCheck *HealthCheck `yaml:"health_check" json:"health_check,omitempty"` // nil: no active checks (passive detection still runs)
}

// Origin is one origin server: snapshot.OriginSpec.
type Origin struct {
	URL    string `yaml:"url" json:"url,omitempty"`       // http:// or https://; an optional path is prefixed to requests
	Weight int    `yaml:"weight" json:"weight,omitempty"` // relative share 1..100; default 1
}

// HealthCheck configures active checks of a pool's origins: snapshot.HealthCheckSpec.
type HealthCheck struct {
	Path         string      `yaml:"path" json:"path,omitempty"`                   // required, e.g. /healthz
	Method       string      `yaml:"method" json:"method,omitempty"`               // default GET
	Host         string      `yaml:"host" json:"host,omitempty"`                   // Host header; default the origin's host
	ExpectStatus StatusRange `yaml:"expect_status" json:"expect_status,omitempty"` // 200 or 200-399 (default)
	BodyContains string      `yaml:"body_contains" json:"body_contains,omitempty"` // optional, searched in the first 64 KiB
	Interval     Duration    `yaml:"interval" json:"interval,omitempty"`           // default 2s; 100ms..1h
	Timeout      Duration    `yaml:"timeout" json:"timeout,omitempty"`             // default 1s; below Interval
	Rise         int         `yaml:"rise" json:"rise,omitempty"`                   // successes in a row to mark up; default 2
	Fall         int         `yaml:"fall" json:"fall,omitempty"`                   // failures in a row to mark down; default 3
}

// Cache holds a site's cache settings: snapshot.CacheSpec. The zero value is the CDN
// default: caching on, RFC 9111 rules.
type Cache struct {
	Disabled             bool     `yaml:"disabled" json:"disabled,omitempty"`                               // store nothing, pass everything through
	DefaultTTL           Duration `yaml:"default_ttl" json:"default_ttl,omitempty"`                         // lifetime of a 200 without freshness info; default 0
	MaxTTL               Duration `yaml:"max_ttl" json:"max_ttl,omitempty"`                                 // cap on every lifetime; default 0: none
	MaxHeuristic         Duration `yaml:"max_heuristic" json:"max_heuristic,omitempty"`                     // cap on heuristic freshness; default 24h
	CacheAuthorized      bool     `yaml:"cache_authorized" json:"cache_authorized,omitempty"`               // risk: one user's page served to another
	IgnoreRequestNoCache bool     `yaml:"ignore_request_no_cache" json:"ignore_request_no_cache,omitempty"` // clients cannot force origin fetches
	AlwaysOnline         Duration `yaml:"always_online" json:"always_online,omitempty"`                     // serve stale this long when origins fail; default 0: off
	// Rules change the settings above for the paths they match; the first match wins. At
	// most 100 per site.
	Rules []CacheRule `yaml:"rules" json:"rules,omitempty"`
}

// CacheRule changes a site's cache settings for the request paths it matches:
// snapshot.CacheRuleSpec. Exactly one of PathPrefix and PathRegex is set. The settings are
// pointers so that a value given as 0 or false (which replaces the site's) is told apart
// from one left out (inherited from the site), in YAML and in the canonical body alike: a
// field left out is absent from the body, one given is always written.
type CacheRule struct {
	PathPrefix           string    `yaml:"path_prefix" json:"path_prefix,omitempty"`                         // matches paths starting with it; starts with "/"
	PathRegex            string    `yaml:"path_regex" json:"path_regex,omitempty"`                           // RE2 (Go regexp) matched anywhere in the path unless anchored
	Bypass               *bool     `yaml:"bypass" json:"bypass,omitempty"`                                   // true: store nothing, pass to the origin; replaces the site's disabled
	DefaultTTL           *Duration `yaml:"default_ttl" json:"default_ttl,omitempty"`                         // as the site's; inherited when left out
	MaxTTL               *Duration `yaml:"max_ttl" json:"max_ttl,omitempty"`                                 // as the site's; inherited when left out
	MaxHeuristic         *Duration `yaml:"max_heuristic" json:"max_heuristic,omitempty"`                     // as the site's; inherited when left out
	IgnoreRequestNoCache *bool     `yaml:"ignore_request_no_cache" json:"ignore_request_no_cache,omitempty"` // as the site's; inherited when left out
	AlwaysOnline         *Duration `yaml:"always_online" json:"always_online,omitempty"`                     // as the site's; inherited when left out
}

// Timeouts bound each origin request: snapshot.TimeoutSpec. Zero takes the default.
type Timeouts struct {
	Connect   Duration `yaml:"connect" json:"connect,omitempty"`       // default 5s
	FirstByte Duration `yaml:"first_byte" json:"first_byte,omitempty"` // request sent -> response headers; default 30s
	Idle      Duration `yaml:"idle" json:"idle,omitempty"`             // between two reads of the body; default 60s
	Total     Duration `yaml:"total" json:"total,omitempty"`           // whole exchange; default 0: none (large files)
}

// Retry says when a failed request is tried on another origin: snapshot.RetrySpec.
type Retry struct {
	Attempts      int      `yaml:"attempts" json:"attempts,omitempty"`             // tries in all, 1..10; default 3
	BudgetPercent float64  `yaml:"budget_percent" json:"budget_percent,omitempty"` // retries as a share of requests; default 20
	MinPerSecond  float64  `yaml:"min_per_second" json:"min_per_second,omitempty"` // retries always allowed per second; default 10
	Methods       []string `yaml:"methods" json:"methods,omitempty"`               // extra idempotent methods, e.g. PUT
}

// Outlier configures passive outlier detection: snapshot.OutlierSpec.
type Outlier struct {
	ConsecutiveFailures int      `yaml:"consecutive_failures" json:"consecutive_failures,omitempty"` // default 5; -1 disables
	BaseEjection        Duration `yaml:"base_ejection" json:"base_ejection,omitempty"`               // first ejection, doubling; default 5s
	MaxEjection         Duration `yaml:"max_ejection" json:"max_ejection,omitempty"`                 // cap; default 5m
}

// Duration is a time.Duration written as a Go duration string ("500ms", "2s", "168h") in
// both YAML and JSON. A string, not a number, because a bare number has no unit and an
// operator's "30" could mean seconds or nanoseconds.
type Duration time.Duration

// String returns the duration in time.Duration's form, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string; time.Duration's form is unique per value,
// which the canonical body relies on.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "2s"`)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`%q: want a duration such as "500ms", "2s" or "168h"`, short(s))
	}
	return v, nil
}

// StatusRange is a health check's expected status: "200" or a range "200-399". In YAML it
// may be written as a number (expect_status: 200) as well as a string, because operators
// write it that way and nothing is ambiguous about it.
type StatusRange string

// Spec converts the config into the snapshot package's Spec, labelled version (nodes use
// the serial). It copies; the result shares nothing mutable with c.
func (c *Config) Spec(version string) snapshot.Spec {
	spec := snapshot.Spec{Version: version}
	for _, s := range c.Sites {
		ss := snapshot.SiteSpec{
			Name:           s.Name,
			Hosts:          clone(s.Hosts),
			Origins:        origins(s.Origins),
			OriginHost:     s.OriginHost,
			TrustedProxies: clone(s.TrustedProxies),
			Cache: snapshot.CacheSpec{
				Disabled:             s.Cache.Disabled,
				DefaultTTL:           time.Duration(s.Cache.DefaultTTL),
				MaxTTL:               time.Duration(s.Cache.MaxTTL),
				MaxHeuristic:         time.Duration(s.Cache.MaxHeuristic),
				CacheAuthorized:      s.Cache.CacheAuthorized,
				IgnoreRequestNoCache: s.Cache.IgnoreRequestNoCache,
				AlwaysOnline:         time.Duration(s.Cache.AlwaysOnline),
				Rules:                cacheRules(s.Cache.Rules),
			},
			Timeouts: snapshot.TimeoutSpec{
				Connect:   time.Duration(s.Timeouts.Connect),
				FirstByte: time.Duration(s.Timeouts.FirstByte),
				Idle:      time.Duration(s.Timeouts.Idle),
				Total:     time.Duration(s.Timeouts.Total),
			},
			Retry: snapshot.RetrySpec{
				Attempts:      s.Retry.Attempts,
				BudgetPercent: s.Retry.BudgetPercent,
				MinPerSecond:  s.Retry.MinPerSecond,
				Methods:       clone(s.Retry.Methods),
			},
			Outlier: snapshot.OutlierSpec{
				ConsecutiveFailures: s.Outlier.ConsecutiveFailures,
				BaseEjection:        time.Duration(s.Outlier.BaseEjection),
				MaxEjection:         time.Duration(s.Outlier.MaxEjection),
			},
		}
		for _, p := range s.Pools {
			ps := snapshot.PoolSpec{Name: p.Name, Origins: origins(p.Origins)}
			if hc := p.HealthCheck; hc != nil {
				ps.HealthCheck = &snapshot.HealthCheckSpec{
					Path:         hc.Path,
					Method:       hc.Method,
					Host:         hc.Host,
					ExpectStatus: string(hc.ExpectStatus),
					BodyContains: hc.BodyContains,
					Interval:     time.Duration(hc.Interval),
					Timeout:      time.Duration(hc.Timeout),
					Rise:         hc.Rise,
					Fall:         hc.Fall,
				}
			}
			ss.Pools = append(ss.Pools, ps)
		}
		spec.Sites = append(spec.Sites, ss)
	}
	return spec
}

func origins(in []Origin) []snapshot.OriginSpec {
	var out []snapshot.OriginSpec
	for _, o := range in {
		out = append(out, snapshot.OriginSpec{URL: o.URL, Weight: o.Weight})
	}
	return out
}

func cacheRules(in []CacheRule) []snapshot.CacheRuleSpec {
	var out []snapshot.CacheRuleSpec
	for _, r := range in {
		out = append(out, snapshot.CacheRuleSpec{
			PathPrefix:           r.PathPrefix,
			PathRegex:            r.PathRegex,
			Bypass:               cloneBool(r.Bypass),
			DefaultTTL:           duration(r.DefaultTTL),
			MaxTTL:               duration(r.MaxTTL),
			MaxHeuristic:         duration(r.MaxHeuristic),
			IgnoreRequestNoCache: cloneBool(r.IgnoreRequestNoCache),
			AlwaysOnline:         duration(r.AlwaysOnline),
		})
	}
	return out
}

// duration converts an optional duration, nil staying nil.
func duration(d *Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := time.Duration(*d)
	return &v
}

func cloneBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// short cuts s for quoting in an error, so that a huge bad value cannot make a huge message.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func clone(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

// Validate checks c as a node would before serving it: the bundle-level rules (a serial
// above 0), then snapshot.Compile, whose errors name field paths
// (`sites[0].origins[0].url: ...`). It is the one validation path for signing, for
// `rhizome validate` and for bundles received from the mesh. Errors wrap ErrInvalid.
func Validate(c *Config) error {
	if c == nil {
		return invalid(errors.New("config: required"))
	}
	var errs []error
	if c.Serial == 0 {
		errs = append(errs, errors.New("serial: must be > 0"))
	}
	if _, err := snapshot.Compile(c.Spec(strconv.FormatUint(c.Serial, 10))); err != nil {
		errs = append(errs, err)
	}
	if err := c.planErr(); err != nil {
		errs = append(errs, err)
	}
	if err := c.DNS.validate(c.Serial); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.securityErr()...)
	return invalid(errors.Join(errs...))
}
