// Package snapshot holds the compiled, immutable view of what a node serves: its sites, their
// hosts, origins and cache settings.
//
// The data plane reads one *Snapshot per request and never writes to it; whoever builds the
// next one (the one-line proxy mode today, verified bundles from the mesh later) calls Compile
// and hands the result to the proxy, which swaps it in atomically. Compile is the single
// place where a Spec is checked: every error names the field path that is wrong, so the same
// messages reach an operator whether the spec came from flags, a file or the mesh.
//
// This package does no I/O and starts no goroutines.
package snapshot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"rhizome/internal/cachepolicy"
	"rhizome/internal/upstream"
)

// problem records one validation error at a field path.
type problem func(path, format string, args ...any)

// Limits on a Spec. They exist so that an oversized config is a validation error with a
// clear message, never a surprise at serve time (the November 2025 outage was a file past a
// hard limit that only the proxy knew about).
const (
	MaxSites          = 10000 // sites per snapshot
	MaxHostsPerSite   = 100   // host names per site
	MaxOriginsPerSite = 64    // origins per site
	MaxOriginWeight   = 100   // weights are 1..100
	MaxTrustedProxies = 256   // trusted proxy prefixes per site
	MaxPoolsPerSite   = 8     // origin pools per site (primary, fallback, ...)
	MaxTimeout        = 24 * time.Hour
	MaxAttempts       = 10    // tries of one request, the first included
	MaxCacheRules     = 100   // cache rules per site; every request may try them all
	MaxRegexBytes     = 1024  // source of one path_regex (and length of one path_prefix)
	MaxRegexProgram   = 10000 // instructions of one compiled path_regex; matching costs up to this much per byte of path
	// MaxRegexProgramTotal bounds the instructions of every path_regex of a snapshot
	// together (about 40 bytes each once compiled), so that a bundle full of large
	// patterns is refused instead of taking the node's memory.
	MaxRegexProgramTotal = 1000000
)

// Defaults of the origin settings, documented in docs/origins.md.
const (
	DefaultConnectTimeout   = 5 * time.Second                   // as HAProxy's usual "timeout connect"
	DefaultFirstByteTimeout = 30 * time.Second                  // from request sent to response headers
	DefaultIdleTimeout      = 60 * time.Second                  // between two reads of a response body
	DefaultAttempts         = 3                                 // a request and up to two retries on other origins
	DefaultRetryBudget      = 100 * upstream.DefaultRetryRatio  // percent: retries may add at most 20% to live traffic...
	DefaultRetryMinPerSec   = upstream.DefaultRetryMinPerSecond // ...but at least 10 per second are always allowed
)

// Spec is the uncompiled description of what a node serves.
type Spec struct {
	Version string     // free-form label shown in status and logs (a bundle serial later)
	Sites   []SiteSpec // at least one
}

// SiteSpec describes one site.
type SiteSpec struct {
	Name string // unique, [a-z0-9-_.]
	// Hosts are the Host header values this site answers, lowercased, without port.
	// "*.example.com" matches any single-or-deeper subdomain; "*" matches every host not
	// claimed by another site (the one-line proxy mode uses it).
	Hosts []string
	// Origins is the short form of one pool named "default". Use either Origins or Pools.
	Origins []OriginSpec
	// Pools are tried in order: a later pool serves only when no origin of the earlier
	// ones is available (e.g. "primary" on one provider, "fallback" on another).
	Pools []PoolSpec
	// OriginHost is the Host header sent to origins. Empty (the default) passes the client's
	// Host through, as a CDN does, so one origin can serve several sites.
	OriginHost string
	// TrustedProxies are the CIDR prefixes whose X-Forwarded-For and X-Forwarded-Proto are
	// believed. Empty (the default) trusts nobody: the client address comes from the socket.
	TrustedProxies []string
	Cache          CacheSpec
	Timeouts       TimeoutSpec
	Retry          RetrySpec
	Outlier        OutlierSpec
}

// PoolSpec is an ordered group of origins, optionally health-checked.
type PoolSpec struct {
	Name        string // unique in the site
	Origins     []OriginSpec
	HealthCheck *HealthCheckSpec // nil: no active checks (passive outlier detection still runs)
}

// HealthCheckSpec configures active health checks of a pool's origins.
type HealthCheckSpec struct {
	Path         string        // required, e.g. "/healthz"
	Method       string        // default GET
	Host         string        // Host header; default the origin's host
	ExpectStatus string        // "200" or a range "200-399" (default)
	BodyContains string        // optional substring of the first 64 KiB of the body
	Interval     time.Duration // default 2s; 100ms..1h
	Timeout      time.Duration // default 1s; must be below Interval
	Rise         int           // successes in a row that mark an origin up; default 2
	Fall         int           // failures in a row that mark it down; default 3
}

// TimeoutSpec bounds each origin request. Zero takes the default.
type TimeoutSpec struct {
	Connect   time.Duration // default 5s
	FirstByte time.Duration // request sent -> response headers; default 30s
	Idle      time.Duration // between two reads of the body; default 60s
	Total     time.Duration // the whole exchange, body included; default 0 = none (large files)
}

// RetrySpec says when a failed request is tried again on another origin. Only requests that
// failed before any byte reached the client are retried, and only idempotent ones (GET,
// HEAD, OPTIONS and Methods), except a connection that was never made, which is retried for
// any request without a body.
type RetrySpec struct {
	Attempts      int      // tries in all, the first included; default 3; 1 disables retries
	BudgetPercent float64  // retries at most this share of requests (percent); default 20
	MinPerSecond  float64  // retries always allowed per second whatever the traffic; default 10
	Methods       []string // extra methods the operator declares idempotent (e.g. PUT)
}

// OutlierSpec configures passive outlier detection on live traffic.
type OutlierSpec struct {
	ConsecutiveFailures int           // failures in a row that eject an origin; default 5; -1 disables
	BaseEjection        time.Duration // first ejection; doubles on each ejection in a row; default 5s
	MaxEjection         time.Duration // cap; default 5m
}

// OriginSpec is one origin server.
type OriginSpec struct {
	URL    string // http:// or https://, host required; an optional path is prefixed to requests
	Weight int    // relative share 1..100; 0 means 1
}

// CacheSpec are a site's cache settings. The zero value is the CDN default: caching on, RFC
// 9111 rules, CDN-Cache-Control honoured.
type CacheSpec struct {
	Disabled bool // pass every request to the origin, store nothing
	// DefaultTTL is the lifetime of a 200 with no freshness information and no Last-Modified.
	// Default 0: such responses are stored only when they carry a validator, then revalidated.
	DefaultTTL time.Duration
	// MaxTTL caps every computed lifetime. Default 0: no cap beyond what the origin says.
	MaxTTL time.Duration
	// MaxHeuristic caps heuristic freshness (10% of the time since Last-Modified). Default 24h.
	MaxHeuristic time.Duration
	// CacheAuthorized stores responses to requests carrying Authorization even without
	// public/s-maxage (RFC 9111 §3.5). Default false; the risk is serving one user's page to another.
	CacheAuthorized bool
	// IgnoreRequestNoCache treats clients' "Cache-Control: no-cache" and "Pragma: no-cache" as
	// absent, so a client cannot force origin fetches. Default false (RFC behaviour).
	IgnoreRequestNoCache bool
	// AlwaysOnline serves any stale object up to this long past expiry when every origin fails,
	// even without stale-if-error (never against must-revalidate). Default 0: off.
	AlwaysOnline time.Duration
	// Rules change these settings for the request paths they match; the first rule that
	// matches wins, and a request no rule matches gets the settings above. At most
	// MaxCacheRules. See CacheRuleSpec.
	Rules []CacheRuleSpec
}

// Snapshot is a compiled Spec. Immutable; safe for concurrent use.
type Snapshot struct {
	Version  string
	sites    []*Site
	exact    map[string]*Site
	wildcard map[string]*Site // "example.com" for "*.example.com"
	fallback *Site            // the "*" site, if any
}

// Site is a compiled site. Immutable; safe for concurrent use.
type Site struct {
	Name    string
	Hosts   []string
	Pools   []upstream.PoolConfig // in order
	Outlier upstream.Outlier
	Retry   Retry
	// Timeouts are the compiled origin timeouts, defaults applied.
	Timeouts TimeoutSpec
	// Upstream is the live state of the site's pools. Compile leaves it nil; the proxy binds
	// it (keeping origins' health across snapshots) before the snapshot is served, and it is
	// not changed after.
	Upstream       *upstream.Group
	OriginHost     string
	TrustedProxies []netip.Prefix
	// CacheEnabled, Policy and AlwaysOnline are the site's own cache settings: what a
	// request gets when no cache rule matches its path. The proxy asks CacheFor.
	CacheEnabled bool
	Policy       cachepolicy.Policy
	AlwaysOnline time.Duration
	cacheRules   []cacheRule // in spec order; the first match wins
}

// Retry is a compiled RetrySpec.
type Retry struct {
	Attempts   int
	Policy     upstream.RetryPolicy
	Idempotent map[string]bool // methods that may be retried after reaching an origin
}

// Sites returns the compiled sites in spec order. Callers must not modify the slice.
func (s *Snapshot) Sites() []*Site { return s.sites }

// Site returns the site that answers host (a Host header value, port allowed), or nil.
// Exact names win over wildcards, the longest wildcard wins, "*" comes last.
func (s *Snapshot) Site(host string) *Site {
	h := normalizeHost(host)
	if site, ok := s.exact[h]; ok {
		return site
	}
	for rest := h; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		if site, ok := s.wildcard[rest]; ok {
			return site
		}
	}
	return s.fallback
}

// normalizeHost lowercases host and strips a port and a trailing dot.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// Empty returns a snapshot with no sites: every request gets 421. A mesh node serves it until
// its first bundle arrives.
func Empty(version string) *Snapshot {
	return &Snapshot{Version: version, exact: map[string]*Site{}, wildcard: map[string]*Site{}}
}

// Compile checks spec and builds a Snapshot. It returns every problem found, joined, each
// prefixed by its field path (e.g. `sites[0].origins[1].url: scheme "ftp" not allowed`).
func Compile(spec Spec) (*Snapshot, error) {
	var errs []error
	var bad problem = func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if len(spec.Sites) == 0 {
		bad("sites", "at least one site is required")
	}
	if len(spec.Sites) > MaxSites {
		bad("sites", "%d sites exceed the limit of %d", len(spec.Sites), MaxSites)
		return nil, errors.Join(errs...)
	}
	snap := &Snapshot{Version: spec.Version, exact: map[string]*Site{}, wildcard: map[string]*Site{}}
	names := map[string]bool{}
	regexes := &regexBudget{left: MaxRegexProgramTotal}
	for i, ss := range spec.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		site := &Site{Name: ss.Name, OriginHost: ss.OriginHost}
		checkName(bad, p+".name", "site", ss.Name, names)

		if len(ss.Hosts) == 0 {
			bad(p+".hosts", "at least one host is required")
		}
		if len(ss.Hosts) > MaxHostsPerSite {
			bad(p+".hosts", "%d hosts exceed the limit of %d", len(ss.Hosts), MaxHostsPerSite)
		}
		for j, h := range ss.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", p, j)
			h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
			if err := checkHostPattern(h); err != nil {
				bad(hp, "%q: %v", ss.Hosts[j], err)
				continue
			}
			switch {
			case h == "*":
				if snap.fallback != nil {
					bad(hp, `"*" is already claimed by site %q`, snap.fallback.Name)
				}
				snap.fallback = site
			case strings.HasPrefix(h, "*."):
				if other, ok := snap.wildcard[h[2:]]; ok {
					bad(hp, "%q is already claimed by site %q", h, other.Name)
				}
				snap.wildcard[h[2:]] = site
			default:
				if other, ok := snap.exact[h]; ok {
					bad(hp, "%q is already claimed by site %q", h, other.Name)
				}
				snap.exact[h] = site
			}
			site.Hosts = append(site.Hosts, h)
		}

		site.Pools = compilePools(p, ss, bad)
		site.Outlier = compileOutlier(p+".outlier", ss.Outlier, bad)
		site.Timeouts = compileTimeouts(p+".timeouts", ss.Timeouts, bad)
		site.Retry = compileRetry(p+".retry", ss.Retry, bad)

		if ss.OriginHost != "" {
			if err := checkHostPattern(strings.ToLower(ss.OriginHost)); err != nil || strings.Contains(ss.OriginHost, "*") {
				bad(p+".origin_host", "%q: not a host name", ss.OriginHost)
			}
		}
		if len(ss.TrustedProxies) > MaxTrustedProxies {
			bad(p+".trusted_proxies", "%d prefixes exceed the limit of %d", len(ss.TrustedProxies), MaxTrustedProxies)
		}
		for j, c := range ss.TrustedProxies {
			pfx, err := ParsePrefix(c)
			if err != nil {
				bad(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "%v", err)
				continue
			}
			site.TrustedProxies = append(site.TrustedProxies, pfx)
		}

		compileCache(p+".cache", ss.Cache, site, regexes, bad)
		snap.sites = append(snap.sites, site)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
}

// ParseOriginURL checks an origin URL: http or https, a host, no user info, query or fragment.
func ParseOriginURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme %q not allowed (use http or https)", raw, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q: host required", raw)
	case u.User != nil:
		return nil, fmt.Errorf("%q: user info not allowed (send credentials as a header)", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%q: query and fragment not allowed", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil || p == "0" {
			return nil, fmt.Errorf("%q: bad port %q", raw, p)
		}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// ParsePrefix reads a CIDR prefix or a bare address (taken as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: not a CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func validName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkHostPattern accepts "*", "*.name" and DNS names (letters, digits, '-', '.'), or an IP.
func checkHostPattern(h string) error {
	if h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 {
		return errors.New("not a host name")
	}
	if _, err := netip.ParseAddr(name); err == nil && name == h {
		return nil
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}
