package bots

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Class is what the stage concluded about a request.
type Class struct {
	Crawler  string // the known crawler it is or claims to be; "" for none
	Category string // the crawler's category, or Automated or Human
	Verified bool   // proved to be Crawler (Method says how)
	Spoofed  bool   // claimed Crawler and failed its check (Method says which)
	// Unverified: claimed Crawler, which can be checked, but the check did not finish
	// (DNS failed or was too slow, the key directory could not be fetched).
	Unverified bool
	Method     string // web-bot-auth, ip-range, reverse-dns; "" when nothing was checked
	Score      int    // 1 (surely automated) .. 99 (surely a person); crawlers score 1
}

// Verification methods.
const (
	MethodSignature = "web-bot-auth"
	MethodIPRange   = "ip-range"
	MethodRDNS      = "reverse-dns"
)

// List is a compiled crawler list. Immutable.
type List struct {
	crawlers []Crawler
	ranges   [][]netip.Prefix
	domains  [][]string // lowercased reverse DNS suffixes
	byToken  map[string]int
	agents   map[string]int // normalised signature agent -> crawler
}

// Compile checks the list and builds its lookup tables.
func Compile(list []Crawler) (*List, error) {
	if errs := ValidateCrawlers("crawlers", list); len(errs) > 0 {
		return nil, fmt.Errorf("%w", errs[0])
	}
	l := &List{crawlers: list, byToken: map[string]int{}, agents: map[string]int{}}
	for i, c := range list {
		var pf []netip.Prefix
		for _, r := range c.IPRanges {
			p, _ := netip.ParsePrefix(r)
			pf = append(pf, p.Masked())
		}
		l.ranges = append(l.ranges, pf)
		var ds []string
		for _, d := range c.ReverseDNS {
			ds = append(ds, strings.ToLower(d))
		}
		l.domains = append(l.domains, ds)
		for _, t := range c.UserAgents {
			if _, dup := l.byToken[strings.ToLower(t)]; !dup {
				l.byToken[strings.ToLower(t)] = i
			}
		}
		for _, a := range c.SignatureAgents {
			n, _ := NormalizeAgent(a)
			l.agents[n] = i
		}
	}
	return l, nil
}

// Crawlers returns the list (not to be modified).
func (l *List) Crawlers() []Crawler { return l.crawlers }

// automationTokens are user-agent words of HTTP libraries and headless browsers: software
// that fetches on its own, not a person's browser.
var automationTokens = map[string]bool{
	"curl": true, "wget": true, "python-requests": true, "python-urllib": true, "python-httpx": true,
	"aiohttp": true, "httpx": true, "go-http-client": true, "java": true, "okhttp": true,
	"libwww-perl": true, "scrapy": true, "headlesschrome": true, "phantomjs": true, "axios": true,
	"node-fetch": true, "undici": true, "apache-httpclient": true, "postmanruntime": true,
	"guzzlehttp": true, "mechanize": true, "httpie": true, "colly": true, "wget2": true,
	"libcurl": true, "winhttp": true, "ruby": true, "reqwest": true, "dart": true, "zgrab": true,
	"masscan": true, "nmap": true, "nikto": true, "sqlmap": true, "python": true,
}

// genericBotWords mark a word as a self-declared bot we do not know by name.
var genericBotWords = []string{"bot", "crawl", "spider", "scrape", "slurp"} // hasBotWord relies on this order

// uaFacts is what one pass over User-Agent found.
type uaFacts struct {
	crawler   int // index in the list, -1 for none
	automated bool
	generic   bool
	browser   bool
}

// isSep separates the words of a User-Agent: product/version, comments, URLs.
func isSep(c byte) bool {
	switch c {
	case ' ', '/', ';', '(', ')', ',', '+', ':', '\t', '[', ']', '"', '=', '{', '}':
		return true
	}
	return false
}

// scanUA reads the User-Agent once, word by word, without allocating.
func (l *List) scanUA(ua string) uaFacts {
	f := uaFacts{crawler: -1}
	f.browser = strings.HasPrefix(ua, "Mozilla/5.0 ") &&
		(strings.Contains(ua, "Chrome/") || strings.Contains(ua, "Firefox/") || strings.Contains(ua, "Safari/"))
	var buf [maxTokenLen]byte
	for i := 0; i < len(ua); {
		for i < len(ua) && isSep(ua[i]) {
			i++
		}
		j := i
		for j < len(ua) && !isSep(ua[j]) {
			j++
		}
		if n := j - i; n > 0 && n <= len(buf) {
			for k := 0; k < n; k++ {
				c := ua[i+k]
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				buf[k] = c
			}
			w := buf[:n]
			if idx, ok := l.byToken[string(w)]; ok && f.crawler < 0 {
				f.crawler = idx
			}
			if automationTokens[string(w)] {
				f.automated = true
			}
			if !f.generic && hasBotWord(w) {
				f.generic = true
			}
		}
		i = j
	}
	return f
}

// hasBotWord reports whether a lowercased word contains one of genericBotWords, in one
// pass over its bytes (this runs for every word of every request's User-Agent).
func hasBotWord(w []byte) bool {
	for k, c := range w {
		var cands []string
		switch c {
		case 'b':
			cands = genericBotWords[:1]
		case 'c':
			cands = genericBotWords[1:2]
		case 's':
			cands = genericBotWords[2:]
		default:
			continue
		}
		for _, g := range cands {
			if len(w)-k >= len(g) && string(w[k:k+len(g)]) == g {
				return true
			}
		}
	}
	return false
}

// score estimates from the request's headers how likely it comes from a person's browser:
// 1 (surely automated) .. 99. It is a cheap header check, not a fingerprint: it catches
// HTTP libraries and careless scripts, and a determined bot that copies a browser's headers
// passes it.
func score(r *http.Request, ua string, f uaFacts) int {
	switch {
	case ua == "":
		return 1
	case f.automated:
		return 5
	case f.generic:
		return 10
	}
	s := 40
	if f.browser {
		s = 90
	}
	h := r.Header
	if len(h["Accept"]) == 0 {
		s -= 30
	}
	if len(h["Accept-Language"]) == 0 {
		s -= 25
	}
	if len(h["Accept-Encoding"]) == 0 {
		s -= 20
	}
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		s -= 20
	}
	// Browsers send Sec-Fetch-* on every request over https since 2020-2023.
	if f.browser && r.TLS != nil && len(h["Sec-Fetch-Mode"]) == 0 {
		s -= 15
	}
	return max(1, min(99, s))
}

// inRanges reports whether a lies in the crawler's published ranges.
func (l *List) inRanges(i int, a netip.Addr) bool {
	for _, p := range l.ranges[i] {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// nameMatches reports whether a confirmed PTR name lies under one of the crawler's domains.
func (l *List) nameMatches(i int, names []string) bool {
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		for _, d := range l.domains[i] {
			if n == d || strings.HasSuffix(n, "."+d) {
				return true
			}
		}
	}
	return false
}
