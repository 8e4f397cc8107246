package snapshot

import (
	"strings"
	"testing"
	"time"
)

func site(mod func(*SiteSpec)) Spec {
	s := SiteSpec{Name: "a", Hosts: []string{"example.com"}, Origins: []OriginSpec{{URL: "http://127.0.0.1:8000"}}}
	if mod != nil {
		mod(&s)
	}
	return Spec{Sites: []SiteSpec{s}}
}

func TestCompileRejects(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"no sites", Spec{}, "sites: at least one site is required"},
		{"no name", site(func(s *SiteSpec) { s.Name = "" }), "sites[0].name: required"},
		{"bad name", site(func(s *SiteSpec) { s.Name = "a b" }), `sites[0].name: "a b"`},
		{"no hosts", site(func(s *SiteSpec) { s.Hosts = nil }), "sites[0].hosts: at least one host"},
		{"bad host", site(func(s *SiteSpec) { s.Hosts = []string{"exa mple.com"} }), `sites[0].hosts[0]: "exa mple.com"`},
		{"no origins", site(func(s *SiteSpec) { s.Origins = nil }), "sites[0].origins: at least one origin"},
		{"ftp origin", site(func(s *SiteSpec) { s.Origins[0].URL = "ftp://x" }), `sites[0].origins[0].url: "ftp://x": scheme "ftp" not allowed`},
		{"no host origin", site(func(s *SiteSpec) { s.Origins[0].URL = "http://" }), "sites[0].origins[0].url: \"http://\": host required"},
		{"userinfo", site(func(s *SiteSpec) { s.Origins[0].URL = "http://u:p@x" }), "user info not allowed"},
		{"query", site(func(s *SiteSpec) { s.Origins[0].URL = "http://x/?a=1" }), "query and fragment not allowed"},
		{"bad port", site(func(s *SiteSpec) { s.Origins[0].URL = "http://x:99999" }), "sites[0].origins[0].url"},
		{"weight", site(func(s *SiteSpec) { s.Origins[0].Weight = 101 }), "sites[0].origins[0].weight: 101 out of range 1..100"},
		{"negative weight", site(func(s *SiteSpec) { s.Origins[0].Weight = -1 }), "sites[0].origins[0].weight"},
		{"trusted proxy", site(func(s *SiteSpec) { s.TrustedProxies = []string{"10.0.0.0/33"} }), "sites[0].trusted_proxies[0]"},
		{"negative ttl", site(func(s *SiteSpec) { s.Cache.DefaultTTL = -time.Second }), "sites[0].cache.default_ttl: -1s is negative"},
		{"default over max", site(func(s *SiteSpec) { s.Cache.DefaultTTL, s.Cache.MaxTTL = time.Hour, time.Minute }), "sites[0].cache.default_ttl: 1h0m0s exceeds max_ttl"},
		{"origin host", site(func(s *SiteSpec) { s.OriginHost = "*.x" }), "sites[0].origin_host"},
		{"too many origins", site(func(s *SiteSpec) {
			for range MaxOriginsPerSite {
				s.Origins = append(s.Origins, OriginSpec{URL: "http://x"})
			}
		}), "origins exceed the limit of 64"},
		{"origins and pools", site(func(s *SiteSpec) { s.Pools = []PoolSpec{{Name: "p", Origins: s.Origins}} }), "sites[0].origins: give either origins or pools"},
		{"pool without name", site(func(s *SiteSpec) { s.Pools, s.Origins = []PoolSpec{{Origins: s.Origins}}, nil }), "sites[0].pools[0].name: required"},
		{"duplicate pool", site(func(s *SiteSpec) {
			s.Pools, s.Origins = []PoolSpec{{Name: "p", Origins: s.Origins}, {Name: "p", Origins: s.Origins}}, nil
		}), `sites[0].pools[1].name: "p": duplicate pool name`},
		{"empty pool", site(func(s *SiteSpec) { s.Pools, s.Origins = []PoolSpec{{Name: "p"}}, nil }), "sites[0].pools[0].origins: at least one origin"},
		{"pool origin url", site(func(s *SiteSpec) {
			s.Pools, s.Origins = []PoolSpec{{Name: "p", Origins: []OriginSpec{{URL: "gopher://x"}}}}, nil
		}), `sites[0].pools[0].origins[0].url: "gopher://x": scheme "gopher" not allowed`},
		{"same origin twice", site(func(s *SiteSpec) { s.Origins = append(s.Origins, s.Origins[0]) }), "sites[0].origins[1].url"},
		{"check path", withCheck(HealthCheckSpec{Path: "healthz"}), "sites[0].pools[0].health_check.path"},
		{"check method", withCheck(HealthCheckSpec{Path: "/h", Method: "GE T"}), "sites[0].pools[0].health_check.method"},
		{"check status", withCheck(HealthCheckSpec{Path: "/h", ExpectStatus: "399-200"}), "sites[0].pools[0].health_check.expect_status"},
		{"check interval", withCheck(HealthCheckSpec{Path: "/h", Interval: time.Millisecond}), "sites[0].pools[0].health_check.interval"},
		{"check timeout", withCheck(HealthCheckSpec{Path: "/h", Timeout: 3 * time.Second}), "sites[0].pools[0].health_check.timeout: 3s must be positive and below the interval 2s"},
		{"check rise", withCheck(HealthCheckSpec{Path: "/h", Rise: 101}), "sites[0].pools[0].health_check.rise"},
		{"HEAD with body", withCheck(HealthCheckSpec{Path: "/h", Method: "HEAD", BodyContains: "ok"}), "sites[0].pools[0].health_check.body_contains: a HEAD check has no body"},
		{"timeout", site(func(s *SiteSpec) { s.Timeouts.FirstByte = -time.Second }), "sites[0].timeouts.first_byte"},
		{"total below connect", site(func(s *SiteSpec) { s.Timeouts.Total = time.Second }), "sites[0].timeouts.total: 1s is shorter than connect 5s"},
		{"attempts", site(func(s *SiteSpec) { s.Retry.Attempts = 11 }), "sites[0].retry.attempts: 11 out of range 1..10"},
		{"budget", site(func(s *SiteSpec) { s.Retry.BudgetPercent = 101 }), "sites[0].retry.budget_percent"},
		{"retry POST", site(func(s *SiteSpec) { s.Retry.Methods = []string{"POST"} }), "sites[0].retry.methods[0]: POST is not idempotent"},
		{"ejection", site(func(s *SiteSpec) { s.Outlier.MaxEjection = time.Second }), "sites[0].outlier.max_ejection"},
		{"duplicate host", Spec{Sites: []SiteSpec{
			{Name: "a", Hosts: []string{"x.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
			{Name: "b", Hosts: []string{"X.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
		}}, `sites[1].hosts[0]: "x.com" is already claimed by site "a"`},
		{"duplicate name", Spec{Sites: []SiteSpec{
			{Name: "a", Hosts: []string{"x.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
			{Name: "a", Hosts: []string{"y.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
		}}, `sites[1].name: "a": duplicate site name`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap, err := Compile(c.spec)
			if err == nil {
				t.Fatalf("compiled %+v", snap)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}

func TestCompileReportsEveryError(t *testing.T) {
	_, err := Compile(site(func(s *SiteSpec) {
		s.Name = ""
		s.Origins[0].URL = "ftp://x"
	}))
	if err == nil || !strings.Contains(err.Error(), "sites[0].name") || !strings.Contains(err.Error(), "sites[0].origins[0].url") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestSiteLookup(t *testing.T) {
	snap, err := Compile(Spec{Sites: []SiteSpec{
		{Name: "exact", Hosts: []string{"www.example.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
		{Name: "wild", Hosts: []string{"*.example.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
		{Name: "deeper", Hosts: []string{"*.cdn.example.com"}, Origins: []OriginSpec{{URL: "http://o"}}},
		{Name: "all", Hosts: []string{"*"}, Origins: []OriginSpec{{URL: "http://o"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"www.example.com":      "exact",
		"WWW.Example.COM:8080": "exact",
		"www.example.com.":     "exact",
		"api.example.com":      "wild",
		"a.b.example.com":      "wild",
		"img.cdn.example.com":  "deeper",
		"example.com":          "all",
		"other.org":            "all",
		"[::1]:80":             "all",
	} {
		if got := snap.Site(host); got == nil || got.Name != want {
			t.Errorf("Site(%q) = %v, want %s", host, got, want)
		}
	}
	noFallback, _ := Compile(site(nil))
	if got := noFallback.Site("other.org"); got != nil {
		t.Fatalf("Site(other.org) = %s, want nil without a catch-all", got.Name)
	}
}

func withCheck(hc HealthCheckSpec) Spec {
	return site(func(s *SiteSpec) {
		s.Pools, s.Origins = []PoolSpec{{Name: "p", Origins: s.Origins, HealthCheck: &hc}}, nil
	})
}

func TestCompileDefaults(t *testing.T) {
	snap, err := Compile(site(func(s *SiteSpec) {
		s.Pools, s.Origins = []PoolSpec{{Name: "p", Origins: s.Origins, HealthCheck: &HealthCheckSpec{Path: "/h"}}}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	st := snap.Sites()[0]
	if st.Timeouts.Connect != DefaultConnectTimeout || st.Timeouts.FirstByte != DefaultFirstByteTimeout || st.Timeouts.Idle != DefaultIdleTimeout || st.Timeouts.Total != 0 {
		t.Fatalf("timeouts %+v", st.Timeouts)
	}
	if st.Retry.Attempts != 3 || st.Retry.Policy.Ratio != 0.2 || !st.Retry.Idempotent["GET"] || st.Retry.Idempotent["POST"] {
		t.Fatalf("retry %+v", st.Retry)
	}
	c := st.Pools[0].Check
	if c.Method != "GET" || c.Interval != 2*time.Second || c.Timeout != time.Second || c.Rise != 2 || c.Fall != 3 || c.StatusMin != 200 || c.StatusMax != 399 {
		t.Fatalf("check %+v", c)
	}
	if st.Outlier.ConsecutiveFailures != 5 || st.Outlier.BaseEjection != 5*time.Second || st.Outlier.MaxEjection != 5*time.Minute {
		t.Fatalf("outlier %+v", st.Outlier)
	}
}
