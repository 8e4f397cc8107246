package snapshot

import (
	"fmt"
	"regexp/syntax"
	"strings"
	"testing"
	"time"

	"rhizome/internal/cachepolicy"
)

// withRules is a valid site with the given cache rules.
func withRules(rules ...CacheRuleSpec) Spec {
	return site(func(s *SiteSpec) { s.Cache.Rules = rules })
}

func prefixRule(p string) CacheRuleSpec { return CacheRuleSpec{PathPrefix: p} }

func TestCacheRulesReject(t *testing.T) {
	tooMany := make([]CacheRuleSpec, 2*MaxCacheRules)
	for i := range tooMany {
		// Each would cost a compile of a thousand instructions, were the count not checked first.
		tooMany[i] = CacheRuleSpec{PathRegex: fmt.Sprintf(`(?:\w{1000})x%d`, i)}
	}
	cases := []struct {
		name string
		spec Spec
		want string // the whole error
	}{
		{"twice the limit", withRules(tooMany...), "sites[0].cache.rules: 200 rules exceed the limit of 100"},
		{"no pattern", withRules(prefixRule("/a"), prefixRule("/b"), prefixRule("/c"), CacheRuleSpec{DefaultTTL: new(time.Hour)}),
			"sites[0].cache.rules[3]: set one of path_prefix or path_regex"},
		{"both patterns", withRules(CacheRuleSpec{PathPrefix: "/a", PathRegex: "a"}),
			"sites[0].cache.rules[0]: set one of path_prefix or path_regex"},
		{"prefix without slash", withRules(prefixRule("static/")),
			`sites[0].cache.rules[0].path_prefix: "static/": must start with "/"`},
		{"prefix with a query", withRules(prefixRule("/search?q=")),
			`sites[0].cache.rules[0].path_prefix: "/search?q=": rules match the path only, never the query`},
		{"prefix too long", withRules(prefixRule("/" + strings.Repeat("a", MaxRegexBytes))),
			"sites[0].cache.rules[0].path_prefix: 1025 bytes exceed the limit of 1024"},
		{"regex too long", withRules(CacheRuleSpec{PathRegex: strings.Repeat("a", MaxRegexBytes+1)}),
			"sites[0].cache.rules[0].path_regex: 1025 bytes exceed the limit of 1024"},
		{"backreference", withRules(prefixRule("/a"), CacheRuleSpec{PathRegex: `(a)\1`}),
			`sites[0].cache.rules[1].path_regex: invalid escape sequence: \1 (RE2 syntax: no backreferences or lookaround)`},
		{"lookahead", withRules(CacheRuleSpec{PathRegex: `foo(?=bar)`}),
			`sites[0].cache.rules[0].path_regex: invalid or unsupported Perl syntax: (?= (RE2 syntax: no backreferences or lookaround)`},
		{"negative lookbehind", withRules(CacheRuleSpec{PathRegex: `(?<!admin)/edit`}),
			`sites[0].cache.rules[0].path_regex: invalid named capture: (?<!admin)/edit (RE2 syntax: no backreferences or lookaround)`},
		{"missing paren", withRules(CacheRuleSpec{PathRegex: `(\.css`}),
			`sites[0].cache.rules[0].path_regex: missing closing ): (\.css`},
		{"nested counted repeats", withRules(CacheRuleSpec{PathRegex: `(?:(?:a{0,1000}){0,1000})`}),
			`sites[0].cache.rules[0].path_regex: invalid repeat count: {0,1000}`},
		{"large program", withRules(CacheRuleSpec{PathRegex: strings.Repeat(`\w{1000}`, 11)}),
			"sites[0].cache.rules[0].path_regex: compiles to 11002 instructions, above the limit of 10000: simplify it"},
		{"very large program, refused from the estimate", withRules(CacheRuleSpec{PathRegex: strings.Repeat(`\w{1000}`, 120)}),
			"sites[0].cache.rules[0].path_regex: compiles to about 240120 instructions, above the limit of 10000: simplify it"},
		{"negative max_heuristic", withRules(CacheRuleSpec{PathPrefix: "/a", MaxHeuristic: new(-time.Second)}),
			"sites[0].cache.rules[0].max_heuristic: -1s is negative"},
		{"default_ttl over max_ttl", withRules(prefixRule("/a"), prefixRule("/b"),
			CacheRuleSpec{PathPrefix: "/c", DefaultTTL: new(2 * time.Hour), MaxTTL: new(time.Hour)}),
			"sites[0].cache.rules[2].default_ttl: 2h0m0s exceeds max_ttl 1h0m0s"},
		{"default_ttl over the site's max_ttl", site(func(s *SiteSpec) {
			s.Cache.MaxTTL = time.Hour
			s.Cache.Rules = []CacheRuleSpec{{PathPrefix: "/a", DefaultTTL: new(2 * time.Hour)}}
		}), "sites[0].cache.rules[0].default_ttl: 2h0m0s exceeds max_ttl 1h0m0s (the site's)"},
		{"max_ttl below the site's default_ttl", site(func(s *SiteSpec) {
			s.Cache.DefaultTTL = 2 * time.Hour
			s.Cache.Rules = []CacheRuleSpec{{PathPrefix: "/a", MaxTTL: new(time.Hour)}}
		}), "sites[0].cache.rules[0].max_ttl: 1h0m0s is below default_ttl 2h0m0s (the site's): set default_ttl in the rule too"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			snap, err := Compile(c.spec)
			if took := time.Since(start); took > time.Second {
				t.Errorf("took %s", took)
			}
			if snap != nil || err == nil {
				t.Fatalf("accepted; want %q", c.want)
			}
			if err.Error() != c.want {
				t.Fatalf("error\n %q\nwant\n %q", err, c.want)
			}
		})
	}
}

func TestCacheRulesAccept(t *testing.T) {
	for _, re := range []string{
		`\.(css|js|png|woff2)$`,
		`^/static/`,
		`(a+)+$`,      // catastrophic for a backtracking engine, linear in RE2
		`^(\w+\s?)*$`, // likewise
		`(?i)\.JPE?G$`,
		strings.Repeat(`\w{1000}`, 9), // 9002 instructions: under the limit
		`(?:(?:(?:a{0,10}){0,10}){0,10})`,
	} {
		if _, err := Compile(withRules(CacheRuleSpec{PathRegex: re})); err != nil {
			t.Errorf("%.40s: %v", re, err)
		}
	}
	// A rule that gives nothing but a pattern is valid: it pins the site's settings on its
	// paths, shielding them from later rules.
	if _, err := Compile(withRules(prefixRule("/"))); err != nil {
		t.Error(err)
	}
}

func TestCacheFor(t *testing.T) {
	spec := site(func(s *SiteSpec) {
		s.Cache = CacheSpec{
			DefaultTTL:           time.Minute,
			MaxTTL:               48 * time.Hour,
			MaxHeuristic:         2 * time.Hour,
			IgnoreRequestNoCache: true,
			AlwaysOnline:         24 * time.Hour,
			Rules: []CacheRuleSpec{
				{PathPrefix: "/static/", DefaultTTL: new(time.Hour)},
				{PathRegex: `\.css$`, DefaultTTL: new(0 * time.Second), IgnoreRequestNoCache: new(false), AlwaysOnline: new(time.Duration(0))},
				{PathPrefix: "/static/old/", Bypass: new(true)}, // never reached: rule 0 comes first
				{PathPrefix: "/api/", Bypass: new(true)},
				{PathPrefix: "/big/", MaxTTL: new(time.Duration(0)), MaxHeuristic: new(time.Duration(0))},
			},
		}
	})
	snap, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := snap.Sites()[0]
	own := CacheSettings{Enabled: true, Policy: s.Policy, AlwaysOnline: 24 * time.Hour, Rule: -1}
	if s.Policy.DefaultTTL != time.Minute || s.Policy.MaxHeuristic != 2*time.Hour || !s.CacheEnabled {
		t.Fatalf("site settings %+v", s.Policy)
	}
	with := func(rule int, mod func(*CacheSettings)) CacheSettings {
		c := own
		c.Rule = rule
		mod(&c)
		return c
	}
	for _, c := range []struct {
		path string
		want CacheSettings
	}{
		{"/home", own},
		{"", own},
		{"/STATIC/a", own}, // case matters, as in a URL path
		{"/static/app.js", with(0, func(c *CacheSettings) { c.Policy.DefaultTTL = time.Hour })},
		{"/static/old/site.css", with(0, func(c *CacheSettings) { c.Policy.DefaultTTL = time.Hour })}, // first match wins
		{"/x/site.css", with(1, func(c *CacheSettings) {
			c.Policy.DefaultTTL, c.Policy.IgnoreRequestNoCache, c.AlwaysOnline = 0, false, 0
		})},
		{"/x/site.css.map", own}, // the regex is anchored at the end
		{"/api/cart", with(3, func(c *CacheSettings) { c.Enabled = false })},
		{"/api", own},
		{"/big/file", with(4, func(c *CacheSettings) {
			c.Policy.MaxTTL = 0
			c.Policy.MaxHeuristic = cachepolicy.DefaultPolicy().MaxHeuristic // 0 takes the default, as at the site level
		})},
	} {
		if got := s.CacheFor(c.path); got != c.want {
			t.Errorf("CacheFor(%q):\n got %+v\nwant %+v", c.path, got, c.want)
		}
	}
}

// TestCacheForDisabledSite: a rule's bypass, given, replaces the site's disabled both ways.
func TestCacheForDisabledSite(t *testing.T) {
	snap, err := Compile(site(func(s *SiteSpec) {
		s.Cache.Disabled = true
		s.Cache.Rules = []CacheRuleSpec{{PathPrefix: "/assets/", Bypass: new(false)}, {PathPrefix: "/other/", DefaultTTL: new(time.Hour)}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := snap.Sites()[0]
	for path, want := range map[string]bool{"/assets/a.png": true, "/other/x": false, "/": false} {
		if got := s.CacheFor(path).Enabled; got != want {
			t.Errorf("CacheFor(%q).Enabled = %v, want %v", path, got, want)
		}
	}
}

// TestCacheForHandBuiltSite: a Site made without Compile (as some tests do) answers with
// its exported settings.
func TestCacheForHandBuiltSite(t *testing.T) {
	s := &Site{CacheEnabled: true, Policy: cachepolicy.DefaultPolicy(), AlwaysOnline: time.Hour}
	want := CacheSettings{Enabled: true, Policy: cachepolicy.DefaultPolicy(), AlwaysOnline: time.Hour, Rule: -1}
	if got := s.CacheFor("/x"); got != want {
		t.Fatalf("got %+v", got)
	}
}

// TestCacheRuleRegexLinearTime proves that patterns that backtrack catastrophically in
// PCRE-style engines cost linear time here: a 100 KB adversarial path through the compiled
// rules takes well under a second, even under -race.
func TestCacheRuleRegexLinearTime(t *testing.T) {
	snap, err := Compile(withRules(
		CacheRuleSpec{PathRegex: `(a+)+$`, DefaultTTL: new(time.Hour)},
		CacheRuleSpec{PathRegex: `^(\w+\s?)*$`, DefaultTTL: new(time.Hour)},
		CacheRuleSpec{PathRegex: `(x+x+)+y`, DefaultTTL: new(time.Hour)},
	))
	if err != nil {
		t.Fatal(err)
	}
	s := snap.Sites()[0]
	evil := "/" + strings.Repeat("a", 100<<10) + "!" // no rule matches: every engine must try hard
	start := time.Now()
	got := s.CacheFor(evil)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("matching a 100 KB path took %s", took)
	}
	if got.Rule != -1 {
		t.Fatalf("rule %d matched %.20q...", got.Rule, evil)
	}
	if got := s.CacheFor("/" + strings.Repeat("a", 100<<10)); got.Rule != 0 {
		t.Fatalf("rule %d, want 0", got.Rule)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("two matches took %s", took)
	}
}

// TestProgSizeEstimate keeps progSize within the factor that compilePathRegex's margin
// assumes: a pattern refused from the estimate (above 4x the limit) is really above it.
func TestProgSizeEstimate(t *testing.T) {
	for _, p := range []string{
		`a`, `abc`, `\.(css|js|png|woff2)$`, `^/static/`, `(a+)+$`, `^(\w+\s?)*$`, `[a-z]{1000}`,
		`(?:(?:(?:a{0,10}){0,10}){0,10})`, `(?:abcdefgh){1000}`, `(?:(?:)){1000}`, `(?:a*){1000}`,
		`(?:a|bc|d){0,1000}`, `(?i)hello{3,9}`, strings.Repeat(`\w{1000}`, 12), `(?:x{2,}){500}`,
		`(?:(?:a*)*)*`, `^$`, `(?:^){1000}`, `(?:\b){2,}`, `(?s).{1000}`, `(?:(a)|(b)){1,999}`,
	} {
		re, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		est, n := progSize(re), len(prog.Inst)
		if est > 4*n || n > 4*est {
			t.Errorf("%.40s: estimate %d, compiled %d", p, est, n)
		}
	}
}

// TestRegexBudget: the patterns of a snapshot together may not pass MaxRegexProgramTotal;
// the error is said once, at the pattern that passed it, and nothing is compiled after it.
func TestRegexBudget(t *testing.T) {
	big := strings.Repeat(`\w{1000}`, 9) // 9002 instructions, and one more per rule for the suffix
	var spec Spec
	for i := range 3 {
		s := SiteSpec{Name: fmt.Sprint("s", i), Hosts: []string{fmt.Sprintf("s%d.example", i)}, Origins: []OriginSpec{{URL: "http://o"}}}
		for j := range MaxCacheRules {
			s.Cache.Rules = append(s.Cache.Rules, CacheRuleSpec{PathRegex: fmt.Sprintf("%sx%d", big, j)})
		}
		spec.Sites = append(spec.Sites, s)
	}
	spec.Sites[2].Cache.Rules[5].PathRegex = `(a)\1` // still checked after the budget is spent
	_, err := Compile(spec)
	want := "sites[1].cache.rules[11].path_regex: the path_regex patterns up to this one compile to more than 1000000 instructions in all, " +
		"the limit per snapshot: use fewer or simpler patterns (path_prefix costs nothing)\n" +
		`sites[2].cache.rules[5].path_regex: invalid escape sequence: \1 (RE2 syntax: no backreferences or lookaround)`
	if err == nil || err.Error() != want {
		t.Fatalf("error\n %v\nwant\n %s", err, want)
	}
}

// FuzzCompilePathRegex: any pattern is either refused with a reason or compiled within the
// limits, and never panics.
func FuzzCompilePathRegex(f *testing.F) {
	for _, s := range []string{`\.(css|js)$`, `(a)\1`, `(?=x)`, `(?<!x)`, `(?:(?:a{0,1000}){0,1000})`,
		strings.Repeat(`\w{1000}`, 11), `(a+)+$`, `(?i)^/x/.*\.pdf$`, `[`, `\C`, `\pZ{1000}`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		defer func() {
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("%q took %s", src, took)
			}
		}()
		budget := &regexBudget{left: MaxRegexProgramTotal}
		re, err := compilePathRegex(src, budget)
		if err != nil {
			if re != nil {
				t.Fatal("a regexp returned with an error")
			}
			return
		}
		if re == nil || len(src) > MaxRegexBytes || budget.left < MaxRegexProgramTotal-MaxRegexProgram {
			t.Fatalf("accepted %q: re %v, budget left %d", src, re, budget.left)
		}
		re.MatchString("/" + strings.Repeat("a", 1000))
	})
}
