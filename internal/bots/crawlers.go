// Package bots classifies requests as known crawlers (verified by Web Bot Auth signatures,
// published IP ranges or reverse-and-forward DNS), unidentified automation, or likely
// people, and applies each site's policy (allow or block per crawler and category). The
// crawler list is data: a default list is built in and a bundle extends or replaces it, so
// a new AI crawler is handled without a release. It also writes a site's managed
// robots.txt, which states the same policy to crawlers that read it.
//
// Classification is cheap on the common path (a browser, an unsigned request, a crawler
// whose address was verified recently): the stage then runs inline. Only a request that
// needs a key directory or a DNS lookup not yet cached waits, on the stage driver's
// budgeted goroutine; lookups run detached and fill a cache, so a lookup cut short by the
// budget still serves the next request.
package bots

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"rhizome/internal/botauth"
)

// Crawler is one known crawler: how to recognise it and how it proves who it is. It is
// carried in bundles (yaml and json tags), so its fields are the bundle's.
type Crawler struct {
	Name     string `yaml:"name" json:"name"`                   // unique; what policies name
	Operator string `yaml:"operator" json:"operator,omitempty"` // who runs it (shown, not matched)
	Category string `yaml:"category" json:"category"`           // one of Categories
	// UserAgents are the product tokens the crawler sends in User-Agent ("GPTBot" matches
	// "Mozilla/5.0 ...; GPTBot/1.1; +https://openai.com/gptbot"), compared case-insensitively
	// with each word of the header.
	UserAgents []string `yaml:"user_agents" json:"user_agents,omitempty"`
	// Robots are the names used in a managed robots.txt; default: UserAgents.
	Robots []string `yaml:"robots" json:"robots,omitempty"`
	// RobotsOnly marks a name that only exists in robots.txt (Google-Extended): it never
	// appears in a request.
	RobotsOnly bool `yaml:"robots_only" json:"robots_only,omitempty"`
	// IPRanges are the crawler's published address ranges: a request claiming the crawler
	// from elsewhere is spoofed.
	IPRanges []string `yaml:"ip_ranges" json:"ip_ranges,omitempty"`
	// ReverseDNS are the domains its addresses' PTR names end in; the name must resolve back
	// to the address (reverse-and-forward DNS, as Google and Bing document).
	ReverseDNS []string `yaml:"reverse_dns" json:"reverse_dns,omitempty"`
	// SignatureAgents are the https origins whose Web Bot Auth key directories the crawler
	// signs with (its Signature-Agent header). Only these directories are ever fetched.
	SignatureAgents []string `yaml:"signature_agents" json:"signature_agents,omitempty"`
}

// Categories are what a crawler can be; policies name them.
var Categories = []string{"search", "ai-training", "ai-search", "ai-assistant", "seo", "monitoring", "social", "archiver", "other"}

// Classes beyond crawler categories that a policy may name: requests from unidentified
// automation (a low score), and requests that claimed a known crawler but failed its check.
const (
	Automated  = "automated"
	Human      = "human"
	Spoofed    = "spoofed"
	Unverified = "unverified"
)

// Limits on the crawler list, so that a bundle cannot grow a node's memory or a request's
// work without bound (on 18 November 2025 a feature file twice its expected size was what
// failed).
const (
	MaxCrawlers      = 1000
	MaxTokens        = 16    // user agents, robots names, reverse DNS domains per crawler
	MaxAgents        = 8     // signature agents per crawler
	MaxRangesTotal   = 50000 // IP ranges over the whole list
	maxTokenLen      = 64
	maxDomainLen     = 253
	maxSignatureURL  = 200
	builtinListLabel = "builtin crawler list"
)

//go:embed crawlers.yaml
var builtinYAML []byte

// Builtin returns the crawler list built into this release (a fresh copy of the entries;
// their slices are shared and must not be modified).
func Builtin() []Crawler { return slices.Clone(builtin()) }

// builtin decodes the embedded list once.
var builtin = sync.OnceValue(func() []Crawler {
	var list []Crawler
	dec := yaml.NewDecoder(bytes.NewReader(builtinYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		// The file is part of the binary and checked by a test: this cannot happen at run
		// time, but an empty list is safer than a crash if it ever did.
		return nil
	}
	return list
})

// Merge returns base with each entry of add appended, or replacing the base entry of the
// same name (case-insensitive).
func Merge(base, add []Crawler) []Crawler {
	out := slices.Clone(base)
	for _, c := range add {
		i := slices.IndexFunc(out, func(b Crawler) bool { return strings.EqualFold(b.Name, c.Name) })
		if i >= 0 {
			out[i] = c
		} else {
			out = append(out, c)
		}
	}
	return out
}

// ValidateCrawlers checks a crawler list, naming each bad field under prefix
// (e.g. "crawlers.list").
func ValidateCrawlers(prefix string, list []Crawler) []error {
	var errs []error
	if len(list) > MaxCrawlers {
		return []error{fmt.Errorf("%s: %d crawlers: at most %d", prefix, len(list), MaxCrawlers)}
	}
	names := map[string]bool{}
	ranges := 0
	for i, c := range list {
		p := fmt.Sprintf("%s[%d]", prefix, i)
		switch {
		case c.Name == "" || !isToken(c.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q: want 1-%d letters, digits and -_.", p, short(c.Name), maxTokenLen))
		case names[strings.ToLower(c.Name)]:
			errs = append(errs, fmt.Errorf("%s.name: %q listed twice", p, c.Name))
		}
		names[strings.ToLower(c.Name)] = true
		if !slices.Contains(Categories, c.Category) {
			errs = append(errs, fmt.Errorf("%s.category: %q: want one of %v", p, short(c.Category), Categories))
		}
		if len(c.UserAgents) == 0 && !c.RobotsOnly {
			errs = append(errs, fmt.Errorf("%s.user_agents: required (or robots_only: true)", p))
		}
		if c.RobotsOnly && (len(c.UserAgents) > 0 || len(c.IPRanges) > 0 || len(c.ReverseDNS) > 0 || len(c.SignatureAgents) > 0) {
			errs = append(errs, fmt.Errorf("%s: robots_only: a name only for robots.txt has no user_agents, ip_ranges, reverse_dns or signature_agents", p))
		}
		if c.RobotsOnly && len(c.Robots) == 0 {
			errs = append(errs, fmt.Errorf("%s.robots: required with robots_only", p))
		}
		errs = append(errs, tokens(p+".user_agents", c.UserAgents, isToken, tokenWant)...)
		errs = append(errs, tokens(p+".robots", c.Robots, isToken, tokenWant)...)
		errs = append(errs, tokens(p+".reverse_dns", c.ReverseDNS, isDomain, "want a domain such as googlebot.com")...)
		if len(c.SignatureAgents) > MaxAgents {
			errs = append(errs, fmt.Errorf("%s.signature_agents: %d: at most %d", p, len(c.SignatureAgents), MaxAgents))
		}
		for j, a := range c.SignatureAgents {
			if _, err := NormalizeAgent(a); err != nil {
				errs = append(errs, fmt.Errorf("%s.signature_agents[%d]: %w", p, j, err))
			}
		}
		ranges += len(c.IPRanges)
		if ranges > MaxRangesTotal {
			errs = append(errs, fmt.Errorf("%s.ip_ranges: more than %d ranges in the whole list", p, MaxRangesTotal))
			return errs
		}
		for j, r := range c.IPRanges {
			if _, err := netip.ParsePrefix(r); err != nil {
				errs = append(errs, fmt.Errorf("%s.ip_ranges[%d]: %q: not a CIDR prefix", p, j, short(r)))
			}
		}
	}
	return errs
}

const tokenWant = "want one word of letters, digits and -_. (at most 64), as it appears in User-Agent"

func tokens(path string, list []string, ok func(string) bool, want string) []error {
	if len(list) > MaxTokens {
		return []error{fmt.Errorf("%s: %d entries: at most %d", path, len(list), MaxTokens)}
	}
	var errs []error
	for i, t := range list {
		if !ok(t) {
			errs = append(errs, fmt.Errorf("%s[%d]: %q: %s", path, i, short(t), want))
		}
	}
	return errs
}

// NormalizeAgent checks a Signature-Agent origin (https, a host, no path) and returns it
// in the one form both this package and botauth compare: botauth.NormalizeAgent's.
func NormalizeAgent(a string) (string, error) {
	if len(a) > maxSignatureURL {
		return "", fmt.Errorf("%q: longer than %d bytes", short(a), maxSignatureURL)
	}
	n, err := botauth.NormalizeAgent(a)
	if err != nil {
		return "", fmt.Errorf("%q: want an https origin like https://crawler.example (%v)", short(a), err)
	}
	return n, nil
}

func isToken(s string) bool {
	if s == "" || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func isDomain(s string) bool {
	if s == "" || len(s) > maxDomainLen || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
