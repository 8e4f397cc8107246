package bots

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// managedRobots writes the block a managed robots.txt starts with: the site's content
// signals for every crawler, then a Disallow group naming each crawler the policy blocks
// outright (by name or by category, verified or not). The origin's own file follows it,
// so the operator's rules for paths still apply; RFC 9309 crawlers merge groups that name
// the same agent.
func managedRobots(site string, p *Policy, l *List) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# BEGIN rhizome managed section (site %s): this site's preferences for crawlers and AI.\n", site)
	if sig := contentSignal(p.ContentSignals); sig != "" {
		// No Allow line: RFC 9309 merges groups of the same agent and lets Allow win a tie,
		// so "Allow: /" here would undo an origin's "Disallow: /".
		b.WriteString("# Content-Signal states how the content may be used once fetched: search = a search\n")
		b.WriteString("# index with links and excerpts; ai-input = feeding AI answers; ai-train = training AI models.\n")
		b.WriteString("User-agent: *\n")
		b.WriteString("Content-Signal: " + sig + "\n\n")
	}
	var names []string
	for _, c := range l.crawlers {
		// A rule that blocks every request of the crawler, verified or not: a robots.txt
		// line cannot say "unless verified".
		act, rule := p.decide(Class{Crawler: c.Name, Category: c.Category})
		if act != Block {
			continue
		}
		if rule >= 0 && p.Rules[rule].Verified {
			continue
		}
		robots := c.Robots
		if len(robots) == 0 {
			robots = c.UserAgents
		}
		for _, n := range robots {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) > 0 {
		for _, n := range names {
			b.WriteString("User-agent: " + n + "\n")
		}
		b.WriteString("Disallow: /\n\n")
	}
	b.WriteString("# END rhizome managed section\n\n")
	return b.Bytes()
}

func contentSignal(s ContentSignals) string {
	var parts []string
	for _, f := range []struct{ k, v string }{{"search", s.Search}, {"ai-input", s.AIInput}, {"ai-train", s.AITrain}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, ", ")
}
