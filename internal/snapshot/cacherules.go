package snapshot

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

	"rhizome/internal/cachepolicy"
)

// CacheRuleSpec changes a site's cache settings for the requests whose path it matches, as
// nginx's `location` or a Cloudflare cache rule does. It matches the request path only
// (decoded, without the query): PathPrefix by prefix, PathRegex anywhere in the path unless
// the pattern anchors itself with ^ or $. Exactly one of the two is set.
//
// The other fields are nil when not given; a field given replaces the site's value for
// matching requests, and one left out is inherited from the site's CacheSpec. Their meaning
// and units are those of the CacheSpec fields of the same names; Bypass given (true or
// false) replaces the site's Disabled, so `bypass: false` turns caching on for some paths
// of a site that sets `disabled: true`.
type CacheRuleSpec struct {
	PathPrefix string // must start with "/"; at most MaxRegexBytes bytes
	// PathRegex is RE2 syntax (Go's regexp): no backreferences or lookaround, and matching
	// takes time linear in the path's length whatever the pattern. At most MaxRegexBytes
	// bytes of source, compiling to at most MaxRegexProgram instructions.
	PathRegex            string
	Bypass               *bool // true: pass to the origin, store nothing (the site's Disabled)
	DefaultTTL           *time.Duration
	MaxTTL               *time.Duration
	MaxHeuristic         *time.Duration // 0 takes the default, 24h, as at the site level
	IgnoreRequestNoCache *bool
	AlwaysOnline         *time.Duration
}

// CacheSettings are the cache settings that apply to one request: a site's own, or those
// of the cache rule that matched the request's path, with what the rule leaves out
// inherited from the site. Values; the caller may keep or copy them.
type CacheSettings struct {
	Enabled      bool // false: pass the request to the origin and store nothing
	Policy       cachepolicy.Policy
	AlwaysOnline time.Duration
	// Rule is the index of the rule in the site's cache.rules that chose these settings,
	// or -1 when none matched (the site's own settings).
	Rule int
}

// cacheRule is a compiled CacheRuleSpec.
type cacheRule struct {
	prefix string         // when re is nil
	re     *regexp.Regexp // safe for concurrent use
	cache  CacheSettings
}

// CacheFor returns the cache settings for a request to path (the request's URL.Path,
// without the query): those of the first cache rule that matches it, else the site's own.
// It costs one prefix comparison or one linear-time regexp match per rule tried.
func (s *Site) CacheFor(path string) CacheSettings {
	for i := range s.cacheRules {
		r := &s.cacheRules[i]
		if r.re == nil && strings.HasPrefix(path, r.prefix) || r.re != nil && r.re.MatchString(path) {
			return r.cache
		}
	}
	return CacheSettings{Enabled: s.CacheEnabled, Policy: s.Policy, AlwaysOnline: s.AlwaysOnline, Rule: -1}
}

// regexBudget is what is left of MaxRegexProgramTotal while a snapshot compiles.
type regexBudget struct {
	left      int
	exhausted bool // said once; later patterns are not compiled
}

// compileCache checks a site's cache section (at path p, "sites[0].cache") and sets the
// site's cache settings and rules.
func compileCache(p string, c CacheSpec, site *Site, regexes *regexBudget, bad problem) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"default_ttl", c.DefaultTTL}, {"max_ttl", c.MaxTTL}, {"max_heuristic", c.MaxHeuristic}, {"always_online", c.AlwaysOnline}} {
		if d.v < 0 {
			bad(p+"."+d.name, "%s is negative", d.v)
		}
	}
	if c.MaxTTL > 0 && c.DefaultTTL > c.MaxTTL {
		bad(p+".default_ttl", "%s exceeds max_ttl %s", c.DefaultTTL, c.MaxTTL)
	}
	site.CacheEnabled = !c.Disabled
	site.Policy = cachepolicy.DefaultPolicy()
	site.Policy.DefaultTTL = c.DefaultTTL
	site.Policy.MaxTTL = c.MaxTTL
	if c.MaxHeuristic > 0 {
		site.Policy.MaxHeuristic = c.MaxHeuristic
	}
	site.Policy.CacheAuthorized = c.CacheAuthorized
	site.Policy.IgnoreRequestNoCache = c.IgnoreRequestNoCache
	site.AlwaysOnline = c.AlwaysOnline

	// The count first: a list past the limit is refused without compiling any of it.
	if len(c.Rules) > MaxCacheRules {
		bad(p+".rules", "%d rules exceed the limit of %d", len(c.Rules), MaxCacheRules)
		return
	}
	own := CacheSettings{Enabled: site.CacheEnabled, Policy: site.Policy, AlwaysOnline: site.AlwaysOnline}
	for i, rs := range c.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, i)
		rule := cacheRule{cache: own}
		rule.cache.Rule = i
		switch {
		case (rs.PathPrefix == "") == (rs.PathRegex == ""):
			bad(rp, "set one of path_prefix or path_regex")
		case rs.PathPrefix != "":
			switch pp := rp + ".path_prefix"; {
			case len(rs.PathPrefix) > MaxRegexBytes:
				bad(pp, "%d bytes exceed the limit of %d", len(rs.PathPrefix), MaxRegexBytes)
			case rs.PathPrefix[0] != '/':
				bad(pp, "%s: must start with \"/\"", quote(rs.PathPrefix))
			case strings.ContainsAny(rs.PathPrefix, "?#"):
				bad(pp, "%s: rules match the path only, never the query", quote(rs.PathPrefix))
			}
			rule.prefix = rs.PathPrefix
		default:
			re, err := compilePathRegex(rs.PathRegex, regexes)
			if err != nil {
				bad(rp+".path_regex", "%v", err)
			}
			rule.re = re
		}
		compileRuleSettings(rp, rs, &rule.cache, bad)
		site.cacheRules = append(site.cacheRules, rule)
	}
}

// compileRuleSettings applies the fields that rule rs (at path rp) gives to out, which
// holds the site's settings, and checks the result as the site's own are checked.
func compileRuleSettings(rp string, rs CacheRuleSpec, out *CacheSettings, bad problem) {
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{"default_ttl", rs.DefaultTTL}, {"max_ttl", rs.MaxTTL}, {"max_heuristic", rs.MaxHeuristic}, {"always_online", rs.AlwaysOnline}} {
		if d.v != nil && *d.v < 0 {
			bad(rp+"."+d.name, "%s is negative", *d.v)
		}
	}
	if rs.Bypass != nil {
		out.Enabled = !*rs.Bypass
	}
	if rs.DefaultTTL != nil {
		out.Policy.DefaultTTL = *rs.DefaultTTL
	}
	if rs.MaxTTL != nil {
		out.Policy.MaxTTL = *rs.MaxTTL
	}
	if rs.MaxHeuristic != nil {
		out.Policy.MaxHeuristic = cachepolicy.DefaultPolicy().MaxHeuristic
		if *rs.MaxHeuristic > 0 {
			out.Policy.MaxHeuristic = *rs.MaxHeuristic
		}
	}
	if rs.IgnoreRequestNoCache != nil {
		out.Policy.IgnoreRequestNoCache = *rs.IgnoreRequestNoCache
	}
	if rs.AlwaysOnline != nil {
		out.AlwaysOnline = *rs.AlwaysOnline
	}
	// default_ttl above max_ttl: said at the field the rule gives. When it gives neither,
	// the site's own check (at cache.default_ttl) has said it already.
	def, maxTTL := out.Policy.DefaultTTL, out.Policy.MaxTTL
	if maxTTL <= 0 || def <= maxTTL {
		return
	}
	switch {
	case rs.DefaultTTL != nil && rs.MaxTTL != nil:
		bad(rp+".default_ttl", "%s exceeds max_ttl %s", def, maxTTL)
	case rs.DefaultTTL != nil:
		bad(rp+".default_ttl", "%s exceeds max_ttl %s (the site's)", def, maxTTL)
	case rs.MaxTTL != nil:
		bad(rp+".max_ttl", "%s is below default_ttl %s (the site's): set default_ttl in the rule too", maxTTL, def)
	}
}

// compilePathRegex checks a path_regex and compiles it, charging its size to budget. The
// checks run cheapest first and before anything large is built: the length of the source,
// the parse (Go's parser refuses repeat counts above 1000, also when nested, and
// backreferences, which RE2 lacks), an estimate of the program's size from the parse tree,
// then the exact compiled size. Once the budget is spent it checks but no longer compiles,
// and returns (nil, nil) for a pattern that parses: the error was reported at the pattern
// that spent it.
func compilePathRegex(src string, budget *regexBudget) (*regexp.Regexp, error) {
	if len(src) > MaxRegexBytes {
		return nil, fmt.Errorf("%d bytes exceed the limit of %d", len(src), MaxRegexBytes)
	}
	tree, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		var se *syntax.Error
		if !errors.As(err, &se) {
			return nil, err
		}
		msg := se.Code.String()
		if se.Expr != "" {
			msg += ": " + cut(se.Expr)
		}
		if se.Code == syntax.ErrInvalidEscape || se.Code == syntax.ErrInvalidPerlOp || hasLookaround(src) {
			msg += " (RE2 syntax: no backreferences or lookaround)"
		}
		return nil, errors.New(msg)
	}
	// Simplify expands counted repeats, so a short pattern can make a large program; the
	// estimate refuses the largest ones without building them. It is within a factor of
	// about two of the real size, hence the margin.
	if n := progSize(tree); n > 4*MaxRegexProgram {
		return nil, fmt.Errorf("compiles to about %d instructions, above the limit of %d: simplify it", n, MaxRegexProgram)
	}
	if budget.exhausted {
		return nil, nil
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, err
	}
	n := len(prog.Inst)
	if n > MaxRegexProgram {
		return nil, fmt.Errorf("compiles to %d instructions, above the limit of %d: simplify it", n, MaxRegexProgram)
	}
	if budget.left -= n; budget.left < 0 {
		budget.exhausted = true
		return nil, fmt.Errorf("the path_regex patterns up to this one compile to more than %d instructions in all, the limit per snapshot: use fewer or simpler patterns (path_prefix costs nothing)", MaxRegexProgramTotal)
	}
	return regexp.Compile(src) // the same syntax (Perl flags), so it cannot fail now
}

// hasLookaround reports whether src tries Perl's lookahead or lookbehind, which Go's
// parser reports as other errors (a lookbehind reads as a bad named group).
func hasLookaround(src string) bool {
	for _, s := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
		if strings.Contains(src, s) {
			return true
		}
	}
	return false
}

// progSize estimates the number of instructions that re compiles to after Simplify, without
// building anything. Saturates instead of overflowing.
func progSize(re *syntax.Regexp) int {
	const ceiling = 1 << 40
	sat := func(n int) int { return min(n, ceiling) }
	sub := 0
	for _, s := range re.Sub {
		sub = sat(sub + progSize(s) + 1)
	}
	switch re.Op {
	case syntax.OpLiteral:
		return max(len(re.Rune), 1)
	case syntax.OpRepeat:
		n := re.Max
		if n < 0 {
			n = re.Min + 1
		}
		return sat(max(n, 1) * sub)
	case syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpConcat, syntax.OpAlternate:
		return max(sub, 1)
	}
	return 1
}

// quote quotes an operator's value for a message, cut so that a huge value cannot make a
// huge message.
func quote(s string) string { return strconv.Quote(cut(s)) }

func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
