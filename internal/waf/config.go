// Package waf is the web application firewall request stage: Coraza v3 running the OWASP
// Core Rule Set 4, embedded in the binary (nothing is downloaded at run time). Per site it
// blocks (or, in detect mode, only logs) requests whose CRS anomaly score reaches the
// site's threshold, with rules switched off by id, everywhere or under a path prefix.
//
// The stage reads the request body up to a limit before judging (Prepare) and hands the
// whole, unchanged body on to the origin. A body over the limit is refused (413) unless the
// site chose inspect_partial, which inspects the first bytes only: what lies past the limit
// is NOT inspected. It inspects requests only: responses are not buffered or scanned. Coraza is kept quiet: no audit log, no debug log, no temporary body
// files; what it reports goes to slog.
package waf

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
)

// Config is one site's WAF settings (from the bundle; zero values mean defaults).
type Config struct {
	// Mode is "block" (default: refuse a request the CRS scores as an attack) or "detect"
	// (log and count what would have been blocked, never block: for trying a WAF on a site).
	Mode string
	// Paranoia is the CRS blocking paranoia level, 1..4; 0 means 1. Each level adds rules
	// that catch more and refuse more ordinary traffic.
	Paranoia int
	// AnomalyThreshold is the CRS inbound anomaly score at which a request is blocked,
	// 1..1000; 0 means 5 (the CRS default: one critical match blocks).
	AnomalyThreshold int
	// Exclusions switch rules off, for false positives.
	Exclusions []Exclusion
	// BodyLimit is how many request body bytes are inspected; 0 means 16 KiB, at most
	// 256 KiB. The Core Rule Set costs about 5 µs of CPU per byte of an argument (Go's
	// regexp engine), so the limit bounds the CPU one request can make the WAF spend:
	// about 0.1 s at 16 KiB, over a second at 256 KiB. The bytes are held in memory for the
	// duration of the check.
	BodyLimit int64
	// OverLimit is what a body larger than BodyLimit gets: "reject" (default: 413, as
	// ModSecurity's SecRequestBodyLimitAction Reject) or "inspect_partial", an explicit
	// opt-in: the first BodyLimit bytes (and one more) are inspected and the whole body
	// still goes to the origin, so everything past the limit is NOT inspected: an attack
	// placed after BodyLimit bytes of padding reaches the origin. Partial inspection of a
	// JSON, XML or multipart body inspects little, as a cut body does not parse.
	OverLimit string
	// TrustedProxies are the site's proxies whose X-Forwarded-For is believed: the WAF
	// sees the client behind them (clientip.Addr) as REMOTE_ADDR. Not validated here
	// (netip has parsed them) and not part of what an engine is compiled from.
	TrustedProxies []netip.Prefix
}

// Exclusion switches off CRS rules by id, everywhere or only under a path prefix.
type Exclusion struct {
	IDs []int
	// PathPrefix limits the exclusion to request paths starting with it, compared with the
	// percent-decoded, normalized path ("/a/../b" is "/b"); "" means every path, otherwise it
	// must start with "/".
	PathPrefix string
}

// Modes.
const (
	ModeBlock  = "block"
	ModeDetect = "detect"
)

// What a body over the limit gets.
const (
	OverLimitInspectPartial = "inspect_partial"
	OverLimitReject         = "reject"
)

// Defaults and bounds.
const (
	DefaultParanoia         = 1
	MaxParanoia             = 4
	DefaultAnomalyThreshold = 5 // CRS default: one critical-severity match
	MaxAnomalyThreshold     = 1000
	DefaultBodyLimit        = 16 << 10
	MaxBodyLimit            = 256 << 10
	// MaxURIBytes and MaxHeaderBytes bound what the WAF reads of the request line and the
	// header fields, for the same reason: longer ones are refused (414, 431), as nginx
	// refuses a request line over its 8 KiB buffers, never let through uninspected.
	MaxURIBytes    = 8 << 10
	MaxHeaderBytes = 32 << 10
	// DefaultBudget is the WAF's time budget per request when the site sets none (past it
	// a check counts as slow): a clean request costs 1-3 ms (BenchmarkCleanGET,
	// BenchmarkCleanPOSTForm), the largest one the default limits allow (8 KiB line, 32
	// KiB of headers, a 16 KiB body) a few tenths of a second at about 5 µs per byte.
	DefaultBudget = 500 * time.Millisecond
	// MaxEngines bounds the distinct engines one Compile builds: each costs about 2.5 MiB
	// and 17 ms of CPU on every node when the bundle arrives (more the first time). Sites
	// whose settings differ only in mode, over_limit or trusted proxies share an engine and
	// count once; see DistinctEngines.
	MaxEngines = 16
	// MaxExclusions bounds a site's exclusions and MaxExclusionIDs the ids of one: each
	// becomes a rule of the compiled engine.
	MaxExclusions   = 256
	MaxExclusionIDs = 1024
)

// Validate checks c and returns one error per problem, each naming its field under prefix
// (e.g. "sites[0].waf"), with the YAML field names. No errors means Compile accepts it.
func (c Config) Validate(prefix string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case "", ModeBlock, ModeDetect:
	default:
		bad("mode", "%q: want block or detect", c.Mode)
	}
	if c.Paranoia < 0 || c.Paranoia > MaxParanoia {
		bad("paranoia", "%d: want 1..%d", c.Paranoia, MaxParanoia)
	}
	if c.AnomalyThreshold < 0 || c.AnomalyThreshold > MaxAnomalyThreshold {
		bad("anomaly_threshold", "%d: want 1..%d", c.AnomalyThreshold, MaxAnomalyThreshold)
	}
	if c.BodyLimit < 0 || c.BodyLimit > MaxBodyLimit {
		bad("body_limit", "%d: want 1..%d bytes", c.BodyLimit, MaxBodyLimit)
	}
	switch c.OverLimit {
	case "", OverLimitReject, OverLimitInspectPartial:
	default:
		bad("over_limit", "%q: want reject or inspect_partial", c.OverLimit)
	}
	if len(c.Exclusions) > MaxExclusions {
		bad("exclusions", "%d exclusions: at most %d", len(c.Exclusions), MaxExclusions)
	}
	var known map[int]bool
	for i, e := range c.Exclusions {
		if i >= MaxExclusions {
			break
		}
		field := fmt.Sprintf("exclusions[%d]", i)
		switch {
		case len(e.IDs) == 0:
			bad(field+".ids", "required")
		case len(e.IDs) > MaxExclusionIDs:
			bad(field+".ids", "%d ids: at most %d", len(e.IDs), MaxExclusionIDs)
		}
		for j, id := range e.IDs {
			if j >= MaxExclusionIDs {
				break
			}
			if known == nil {
				var err error
				if known, err = knownRuleIDs(); err != nil {
					bad(field+".ids", "cannot read the Core Rule Set: %v", err)
					break
				}
			}
			if !known[id] {
				bad(fmt.Sprintf("%s.ids[%d]", field, j), "%d: no such rule in the Core Rule Set", id)
			}
		}
		if e.PathPrefix != "" {
			if !strings.HasPrefix(e.PathPrefix, "/") {
				bad(field+".path_prefix", "%q: must start with /", e.PathPrefix)
			} else if i := strings.IndexFunc(e.PathPrefix, notPathChar); i >= 0 {
				r, _ := utf8.DecodeRuneInString(e.PathPrefix[i:])
				bad(field+".path_prefix", "%q: character %q not allowed in a path", e.PathPrefix, r)
			}
		}
	}
	return errs
}

// notPathChar reports the characters a path prefix may not hold. The prefix is written into
// a SecLang rule, so only RFC 3986 path characters and non-ASCII letters (the path is
// matched percent-decoded) are allowed: no quote, backslash, brace (macro expansion), space
// or control character can reach the rule parser.
func notPathChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	case r >= 0x80:
		return r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r)
	case strings.ContainsRune("-._~!$&'()*+,;=:@/%", r):
		return false
	}
	return true
}

// normalized returns c with defaults applied, exclusion ids sorted and deduplicated, and
// exclusions with the same prefix merged, in prefix order: equal settings give equal values,
// so the result keys the engine cache. Mode, OverLimit and TrustedProxies are the stage's
// business, not the engine's, and are kept as given (defaulted).
func (c Config) normalized() Config {
	if c.Mode == "" {
		c.Mode = ModeBlock
	}
	if c.Paranoia == 0 {
		c.Paranoia = DefaultParanoia
	}
	if c.AnomalyThreshold == 0 {
		c.AnomalyThreshold = DefaultAnomalyThreshold
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.OverLimit == "" {
		c.OverLimit = OverLimitReject
	}
	byPrefix := map[string]map[int]bool{}
	for _, e := range c.Exclusions {
		m := byPrefix[e.PathPrefix]
		if m == nil {
			m = map[int]bool{}
			byPrefix[e.PathPrefix] = m
		}
		for _, id := range e.IDs {
			m[id] = true
		}
	}
	prefixes := make([]string, 0, len(byPrefix))
	for p := range byPrefix {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	c.Exclusions = nil
	for _, p := range prefixes {
		ids := make([]int, 0, len(byPrefix[p]))
		for id := range byPrefix[p] {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		c.Exclusions = append(c.Exclusions, Exclusion{IDs: ids, PathPrefix: p})
	}
	return c
}

// DistinctEngines is how many engines Compile would build for sites: the number of distinct
// settings once defaults are applied and mode, over_limit and trusted proxies (which do not
// change the engine) are ignored. Compile refuses more than MaxEngines; bundle validation
// can call this to refuse such a bundle before it reaches a node.
func DistinctEngines(sites map[string]Config) int {
	keys := make(map[string]bool, len(sites))
	for _, c := range sites {
		keys[c.normalized().engineKey()] = true
	}
	return len(keys)
}

// engineKey is the canonical text of what the compiled engine depends on.
func (c Config) engineKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pl=%d thr=%d body=%d", c.Paranoia, c.AnomalyThreshold, c.BodyLimit)
	for _, e := range c.Exclusions {
		fmt.Fprintf(&b, " %q:", e.PathPrefix)
		for _, id := range e.IDs {
			b.WriteString(strconv.Itoa(id))
			b.WriteByte(',')
		}
	}
	return b.String()
}

var (
	knownOnce sync.Once
	known     map[int]bool
	knownErr  error
)

// ruleIDRe finds a rule id in a SecLang line: id:942100 or id:'200000'.
var ruleIDRe = regexp.MustCompile(`\bid:'?([0-9]+)`)

// knownRuleIDs returns the ids of the embedded CRS rules and of coraza.conf-recommended,
// read once, on first use (a few milliseconds; most processes never validate exclusions).
func knownRuleIDs() (map[int]bool, error) {
	knownOnce.Do(func() {
		ids := map[int]bool{}
		files := []string{"@coraza.conf-recommended"}
		crs, err := fs.Glob(coreruleset.FS, "@owasp_crs/*.conf")
		if err != nil {
			knownErr = fmt.Errorf("list the CRS rule files: %w", err)
			return
		}
		files = append(files, crs...)
		for _, f := range files {
			data, err := fs.ReadFile(coreruleset.FS, f)
			if err != nil {
				knownErr = fmt.Errorf("read %s: %w", f, err)
				return
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				line := bytes.TrimSpace(sc.Bytes())
				if len(line) == 0 || line[0] == '#' {
					continue
				}
				for _, m := range ruleIDRe.FindAllSubmatch(line, -1) {
					if id, err := strconv.Atoi(string(m[1])); err == nil {
						ids[id] = true
					}
				}
			}
			if err := sc.Err(); err != nil {
				knownErr = fmt.Errorf("read %s: %w", f, err)
				return
			}
		}
		if len(ids) == 0 {
			knownErr = fmt.Errorf("no rule ids found in the embedded Core Rule Set")
			return
		}
		known = ids
	})
	return known, knownErr
}
