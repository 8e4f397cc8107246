package bots

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Policy is a site's bot policy, carried in bundles (a site's `bots:` section).
type Policy struct {
	// Rules are tried in order; the first that matches a request decides it. No match: allow.
	Rules []Rule `yaml:"rules" json:"rules,omitempty"`
	// Spoofed is what a request gets that claims a known crawler and fails its check (an
	// address outside its published ranges, a reverse DNS name not its own, a broken
	// signature): block (the default) or allow.
	Spoofed string `yaml:"spoofed" json:"spoofed,omitempty"`
	// Unverified is what a request gets that claims a crawler that can be checked, when the
	// check could not finish (its DNS failed or was too slow, its key directory could not be
	// fetched): block (the default: otherwise a spoofer with a slow reverse zone would pass)
	// or allow (favour real crawlers when your resolver is unreliable).
	Unverified string `yaml:"unverified" json:"unverified,omitempty"`
	// AutomatedBelow is the score (1 = surely automated, 99 = surely a person) under which an
	// unidentified request counts as automated; default 30.
	AutomatedBelow int `yaml:"automated_below" json:"automated_below,omitempty"`
	// RobotsTxt "managed" answers /robots.txt with the site's AI preferences stated first,
	// then the origin's own file; "" or "origin" leaves the origin's untouched.
	RobotsTxt string `yaml:"robots_txt" json:"robots_txt,omitempty"`
	// ContentSignals are stated in the managed robots.txt (contentsignals.org): "yes", "no"
	// or "" (not stated) for each use of the content.
	ContentSignals ContentSignals `yaml:"content_signals" json:"content_signals"`
}

// ContentSignals are a site's preferences on how its content may be used once crawled.
type ContentSignals struct {
	Search  string `yaml:"search" json:"search,omitempty"`     // building a search index, showing links and excerpts
	AIInput string `yaml:"ai_input" json:"ai_input,omitempty"` // feeding AI answers in real time (retrieval, grounding)
	AITrain string `yaml:"ai_train" json:"ai_train,omitempty"` // training or fine-tuning AI models
}

// Rule is one line of a policy. Crawler and Category narrow what it matches (at least one
// is required); Verified narrows it to crawlers that proved who they are.
type Rule struct {
	Crawler  string `yaml:"crawler" json:"crawler,omitempty"`   // a name from the crawler list
	Category string `yaml:"category" json:"category,omitempty"` // one of Categories, "automated" or "human"
	Verified bool   `yaml:"verified" json:"verified,omitempty"` // only requests verified as the crawler
	Action   string `yaml:"action" json:"action"`               // allow or block
}

// Actions a rule may take.
const (
	Allow = "allow"
	Block = "block"
)

// MaxRules bounds a site's policy.
const MaxRules = 200

// Validate checks the policy against the crawler list it will run with, naming bad fields
// under prefix (e.g. "sites[0].bots").
func (p *Policy) Validate(prefix string, list []Crawler) []error {
	var errs []error
	if len(p.Rules) > MaxRules {
		return []error{fmt.Errorf("%s.rules: %d rules: at most %d", prefix, len(p.Rules), MaxRules)}
	}
	classes := append(slices.Clone(Categories), Automated, Human)
	for i, r := range p.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", prefix, i)
		if r.Crawler == "" && r.Category == "" {
			errs = append(errs, fmt.Errorf("%s: name a crawler or a category", rp))
		}
		if r.Crawler != "" && !slices.ContainsFunc(list, func(c Crawler) bool { return strings.EqualFold(c.Name, r.Crawler) }) {
			errs = append(errs, fmt.Errorf("%s.crawler: %q: not in the crawler list (add it under crawlers.list)", rp, short(r.Crawler)))
		}
		if r.Category != "" && !slices.Contains(classes, r.Category) {
			errs = append(errs, fmt.Errorf("%s.category: %q: want one of %v", rp, short(r.Category), classes))
		}
		if r.Verified && (r.Category == Automated || r.Category == Human) {
			errs = append(errs, fmt.Errorf("%s.verified: only crawlers are verified, not %q", rp, r.Category))
		}
		errs = append(errs, actionErr(rp+".action", r.Action, false)...)
	}
	errs = append(errs, actionErr(prefix+".spoofed", p.Spoofed, true)...)
	errs = append(errs, actionErr(prefix+".unverified", p.Unverified, true)...)
	if p.AutomatedBelow < 0 || p.AutomatedBelow > 99 {
		errs = append(errs, fmt.Errorf("%s.automated_below: %d: want 1..99 (0 for the default 30)", prefix, p.AutomatedBelow))
	}
	if p.RobotsTxt != "" && p.RobotsTxt != "managed" && p.RobotsTxt != "origin" {
		errs = append(errs, fmt.Errorf("%s.robots_txt: %q: want managed or origin", prefix, short(p.RobotsTxt)))
	}
	for _, f := range []struct{ name, v string }{{"search", p.ContentSignals.Search}, {"ai_input", p.ContentSignals.AIInput}, {"ai_train", p.ContentSignals.AITrain}} {
		if f.v != "" && f.v != "yes" && f.v != "no" {
			errs = append(errs, fmt.Errorf("%s.content_signals.%s: %q: want yes or no", prefix, f.name, short(f.v)))
		}
	}
	return errs
}

var errCharge = errors.New("charge needs pay-per-crawl, which this release does not have yet: use allow or block")

func actionErr(path, a string, optional bool) []error {
	switch {
	case a == Allow || a == Block || optional && a == "":
		return nil
	case a == "charge":
		return []error{fmt.Errorf("%s: %w", path, errCharge)}
	case a == "":
		return []error{fmt.Errorf("%s: required: allow or block", path)}
	}
	return []error{fmt.Errorf("%s: %q: want allow or block", path, short(a))}
}

// decide returns the policy's action for a class and the rule (index, or -1) that chose it.
func (p *Policy) decide(c Class) (string, int) {
	if c.Spoofed {
		if p.Spoofed == Allow {
			return Allow, -1
		}
		return Block, -1
	}
	if c.Unverified && p.Unverified != Allow {
		return Block, -1
	}
	for i, r := range p.Rules {
		if r.Crawler != "" && !strings.EqualFold(r.Crawler, c.Crawler) {
			continue
		}
		if r.Category != "" && r.Category != c.Category {
			continue
		}
		if r.Verified && !c.Verified {
			continue
		}
		return r.Action, i
	}
	return Allow, -1
}
