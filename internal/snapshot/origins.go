package snapshot

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rhizome/internal/upstream"
)

// compilePools checks a site's origins or pools and turns them into pool configs.
func compilePools(p string, ss SiteSpec, bad problem) []upstream.PoolConfig {
	pools := ss.Pools
	base := p + ".pools"
	switch {
	case len(ss.Origins) > 0 && len(ss.Pools) > 0:
		bad(p+".origins", "give either origins or pools, not both")
		return nil
	case len(ss.Origins) > 0:
		pools = []PoolSpec{{Name: "default", Origins: ss.Origins}}
		base = ""
	case len(ss.Pools) == 0:
		bad(p+".origins", "at least one origin is required")
		return nil
	}
	if len(pools) > MaxPoolsPerSite {
		bad(base, "%d pools exceed the limit of %d", len(pools), MaxPoolsPerSite)
	}
	names := map[string]bool{}
	total := 0
	var out []upstream.PoolConfig
	for i, ps := range pools {
		pp := fmt.Sprintf("%s[%d]", base, i)
		opath := pp + ".origins"
		if base == "" { // the short form: paths name sites[i].origins[j]
			pp, opath = p, p+".origins"
		}
		checkName(bad, pp+".name", "pool", ps.Name, names)
		if len(ps.Origins) == 0 {
			bad(opath, "at least one origin is required")
		}
		total += len(ps.Origins)
		pc := upstream.PoolConfig{Name: ps.Name}
		seen := map[string]bool{}
		for j, o := range ps.Origins {
			op := fmt.Sprintf("%s[%d]", opath, j)
			u, err := ParseOriginURL(o.URL)
			if err != nil {
				bad(op+".url", "%v", err)
			}
			w := o.Weight
			if w == 0 {
				w = 1
			}
			if w < 1 || w > MaxOriginWeight {
				bad(op+".weight", "%d out of range 1..%d", o.Weight, MaxOriginWeight)
			}
			if u != nil {
				if seen[u.String()] {
					bad(op+".url", "%q is listed twice in this pool", o.URL)
				}
				seen[u.String()] = true
				pc.Origins = append(pc.Origins, upstream.OriginConfig{URL: u, Weight: w})
			}
		}
		if ps.HealthCheck != nil {
			pc.Check = compileCheck(pp+".health_check", *ps.HealthCheck, bad)
		}
		out = append(out, pc)
	}
	if total > MaxOriginsPerSite {
		bad(p+".origins", "%d origins exceed the limit of %d", total, MaxOriginsPerSite)
	}
	return out
}

func compileCheck(p string, hc HealthCheckSpec, bad problem) *upstream.HealthCheck {
	c := &upstream.HealthCheck{
		Method: hc.Method, Path: hc.Path, Host: hc.Host, BodyContains: hc.BodyContains,
		Interval: hc.Interval, Timeout: hc.Timeout, Rise: hc.Rise, Fall: hc.Fall,
		StatusMin: upstream.DefaultCheckStatusMin, StatusMax: upstream.DefaultCheckStatusMax,
	}
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if !validToken(c.Method) {
		bad(p+".method", "%q is not an HTTP method", hc.Method)
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \r\n#") {
		bad(p+".path", "%q: want an absolute path such as /healthz", hc.Path)
	}
	if c.Host != "" && checkHostPattern(strings.ToLower(c.Host)) != nil {
		bad(p+".host", "%q: not a host name", hc.Host)
	}
	if hc.ExpectStatus != "" {
		lo, hi, err := parseStatusRange(hc.ExpectStatus)
		if err != nil {
			bad(p+".expect_status", "%v", err)
		}
		c.StatusMin, c.StatusMax = lo, hi
	}
	if c.Method == http.MethodHead && c.BodyContains != "" {
		bad(p+".body_contains", "a HEAD check has no body to search; use GET or drop body_contains")
	}
	if len(c.BodyContains) > 1024 {
		bad(p+".body_contains", "%d bytes exceed the limit of 1024", len(c.BodyContains))
	}
	if c.Interval == 0 {
		c.Interval = upstream.DefaultCheckInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(upstream.DefaultCheckTimeout, c.Interval/2)
	}
	if c.Interval < 100*time.Millisecond || c.Interval > time.Hour {
		bad(p+".interval", "%s out of range 100ms..1h", c.Interval)
	}
	if c.Timeout <= 0 || c.Timeout >= c.Interval {
		bad(p+".timeout", "%s must be positive and below the interval %s", c.Timeout, c.Interval)
	}
	if c.Rise == 0 {
		c.Rise = upstream.DefaultCheckRise
	}
	if c.Fall == 0 {
		c.Fall = upstream.DefaultCheckFall
	}
	if c.Rise < 1 || c.Rise > 100 {
		bad(p+".rise", "%d out of range 1..100", hc.Rise)
	}
	if c.Fall < 1 || c.Fall > 100 {
		bad(p+".fall", "%d out of range 1..100", hc.Fall)
	}
	return c
}

// parseStatusRange reads "200" or "200-399".
func parseStatusRange(s string) (int, int, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.Atoi(strings.TrimSpace(hi))
	}
	if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
		return 0, 0, fmt.Errorf("%q: want a status such as 200 or a range such as 200-399", s)
	}
	return a, b, nil
}

func compileTimeouts(p string, t TimeoutSpec, bad problem) TimeoutSpec {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect", t.Connect}, {"first_byte", t.FirstByte}, {"idle", t.Idle}, {"total", t.Total}} {
		if d.v < 0 || d.v > MaxTimeout {
			bad(p+"."+d.name, "%s out of range 0..%s", d.v, MaxTimeout)
		}
	}
	if t.Connect == 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.FirstByte == 0 {
		t.FirstByte = DefaultFirstByteTimeout
	}
	if t.Idle == 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.Total > 0 && t.Total < t.Connect {
		bad(p+".total", "%s is shorter than connect %s", t.Total, t.Connect)
	}
	return t
}

func compileRetry(p string, r RetrySpec, bad problem) Retry {
	out := Retry{Attempts: r.Attempts, Idempotent: map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true}}
	if out.Attempts == 0 {
		out.Attempts = DefaultAttempts
	}
	if out.Attempts < 1 || out.Attempts > MaxAttempts {
		bad(p+".attempts", "%d out of range 1..%d", r.Attempts, MaxAttempts)
	}
	budget, floor := r.BudgetPercent, r.MinPerSecond
	if budget == 0 {
		budget = DefaultRetryBudget
	}
	if floor == 0 {
		floor = DefaultRetryMinPerSec
	}
	if !(budget > 0 && budget <= 100) {
		bad(p+".budget_percent", "%v out of range (0, 100]", r.BudgetPercent)
	}
	if !(floor >= 0 && floor <= 1e6) {
		bad(p+".min_per_second", "%v out of range 0..1000000", r.MinPerSecond)
	}
	out.Policy = upstream.RetryPolicy{Ratio: budget / 100, MinPerSecond: floor}
	for i, m := range r.Methods {
		if !validToken(m) || m != strings.ToUpper(m) {
			bad(fmt.Sprintf("%s.methods[%d]", p, i), "%q is not an upper-case HTTP method", m)
			continue
		}
		if m == http.MethodPost || m == http.MethodPatch || m == http.MethodConnect {
			bad(fmt.Sprintf("%s.methods[%d]", p, i), "%s is not idempotent; retrying it could repeat its effect", m)
			continue
		}
		out.Idempotent[m] = true
	}
	return out
}

func compileOutlier(p string, o OutlierSpec, bad problem) upstream.Outlier {
	out := upstream.Outlier{ConsecutiveFailures: o.ConsecutiveFailures, BaseEjection: o.BaseEjection, MaxEjection: o.MaxEjection}
	if out.ConsecutiveFailures == 0 {
		out.ConsecutiveFailures = upstream.DefaultConsecutiveFailures
	}
	if out.ConsecutiveFailures < -1 || out.ConsecutiveFailures > 1000 {
		bad(p+".consecutive_failures", "%d out of range 1..1000 (or -1 to disable)", o.ConsecutiveFailures)
	}
	if out.BaseEjection == 0 {
		out.BaseEjection = upstream.DefaultBaseEjection
	}
	if out.MaxEjection == 0 {
		out.MaxEjection = upstream.DefaultMaxEjection
	}
	if out.BaseEjection < 0 || out.BaseEjection > time.Hour {
		bad(p+".base_ejection", "%s out of range 0..1h", o.BaseEjection)
	}
	if out.MaxEjection < out.BaseEjection || out.MaxEjection > 24*time.Hour {
		bad(p+".max_ejection", "%s must be between base_ejection (%s) and 24h", out.MaxEjection, out.BaseEjection)
	}
	return out
}

// validToken reports whether s is an RFC 9110 token (method names).
func validToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// checkName validates a site or pool name and that it is unique among seen, which it updates.
func checkName(bad problem, path, kind, name string, seen map[string]bool) {
	switch {
	case name == "":
		bad(path, "required")
	case !validName(name):
		bad(path, "%q: use letters, digits, '-', '_' and '.'", name)
	case seen[name]:
		bad(path, "%q: duplicate %s name", name, kind)
	}
	seen[name] = true
}
