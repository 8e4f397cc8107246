// Package ratelimit is the rate-limiting request stage: per site, an ordered list of rules,
// each with a token bucket (GCRA) per client key. Keys live in a bounded table: a flood of
// distinct keys evicts old buckets (an evicted key simply starts with a full bucket again)
// and never grows memory beyond the bound given to New.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rhizome/internal/clientip"
	"rhizome/internal/stages"
)

// Rule is one rate-limiting rule of a site.
type Rule struct {
	Name       string        // shown in logs and the 429 reason
	PathPrefix string        // "" matches every path
	Methods    []string      // empty: every method
	Header     string        // optional: the rule applies only to requests carrying this header
	Key        string        // "ip" (default), "ip/24" (IPv4 /24, IPv6 /64 prefix), "header:NAME", "cookie:NAME"
	Limit      int           // requests per Period, >= 1
	Period     time.Duration // 1s..1h
	Burst      int           // requests allowed at once (the bucket's capacity), default = Limit
	Action     string        // "block" (default: 429) or "log" (count, let through)
}

// SiteRules are the rules of one site and the proxies it trusts to report the client
// address in X-Forwarded-For.
type SiteRules struct {
	Site           string
	Rules          []Rule
	TrustedProxies []netip.Prefix
}

// Actions.
const (
	ActionBlock = "block"
	ActionLog   = "log"
)

// Bounds of a rule.
const (
	MinPeriod = time.Second
	MaxPeriod = time.Hour
	MaxLimit  = 1_000_000
	MaxBurst  = 1_000_000
)

// DefaultMaxKeys bounds the key table when New is given 0.
const DefaultMaxKeys = 1_000_000

// maxKeyLen: longer header or cookie values are replaced by their hash.
const maxKeyLen = 128

// Compile checks rules and returns them with defaults applied (Key "ip", Burst = Limit,
// Action "block", Methods upper-cased). Errors name field paths under prefix, e.g.
// "sites[3].rate_limits[0].limit"; all the errors found are joined.
func Compile(prefix string, rules []Rule) ([]Rule, error) {
	out := make([]Rule, 0, len(rules))
	var errs []error
	for j, r := range rules {
		c, rerrs := compileRule(fmt.Sprintf("%s[%d]", prefix, j), r)
		errs = append(errs, rerrs...)
		out = append(out, c)
	}
	names := map[string]int{}
	for j, r := range out {
		if r.Name == "" {
			continue
		}
		if k, dup := names[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%s[%d].name: %q already names %s[%d]", prefix, j, r.Name, prefix, k))
			continue
		}
		names[r.Name] = j
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func compileRule(path string, r Rule) (Rule, []error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if r.Name == "" {
		bad("name", "required")
	} else if strings.ContainsFunc(r.Name, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		bad("name", "%q contains spaces or control characters", r.Name)
	}
	if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
		bad("path_prefix", "%q must start with /", r.PathPrefix)
	}
	if len(r.Methods) > 0 {
		ms := make([]string, len(r.Methods))
		for i, m := range r.Methods {
			if !isToken(m) {
				bad(fmt.Sprintf("methods[%d]", i), "%q is not a method", m)
			}
			ms[i] = strings.ToUpper(m)
		}
		r.Methods = ms
	}
	if r.Header != "" && !isToken(r.Header) {
		bad("header", "%q is not a header name", r.Header)
	}
	switch {
	case r.Key == "":
		r.Key = "ip"
	case r.Key == "ip", r.Key == "ip/24":
	case strings.HasPrefix(r.Key, "header:"):
		if n := strings.TrimPrefix(r.Key, "header:"); !isToken(n) {
			bad("key", "%q: header name %q is not valid", r.Key, n)
		}
	case strings.HasPrefix(r.Key, "cookie:"):
		if n := strings.TrimPrefix(r.Key, "cookie:"); !isToken(n) {
			bad("key", "%q: cookie name %q is not valid", r.Key, n)
		}
	default:
		bad("key", "%q: want ip, ip/24, header:NAME or cookie:NAME", r.Key)
	}
	if r.Limit < 1 || r.Limit > MaxLimit {
		bad("limit", "%d: want 1..%d", r.Limit, MaxLimit)
	}
	if r.Period < MinPeriod || r.Period > MaxPeriod {
		bad("period", "%s: want %s..%s", r.Period, MinPeriod, MaxPeriod)
	}
	switch {
	case r.Burst < 0 || r.Burst > MaxBurst:
		bad("burst", "%d: want 0..%d (0: the limit)", r.Burst, MaxBurst)
	case r.Burst == 0:
		r.Burst = r.Limit
	}
	switch r.Action {
	case "":
		r.Action = ActionBlock
	case ActionBlock, ActionLog:
	default:
		bad("action", "%q: want block or log", r.Action)
	}
	return r, errs
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

type keyKind uint8

const (
	keyIP keyKind = iota
	keyIP24
	keyHeader
	keyCookie
)

// rule is a compiled rule.
type rule struct {
	Rule
	id       string  // identifies the rule's buckets: same site, index and rate keep them
	kind     keyKind // how the key is computed
	keyName  string  // header or cookie name
	interval int64   // ns between two requests at the sustained rate
	tau      int64   // interval * Burst
}

type site struct {
	rules   []rule
	trusted []netip.Prefix
}

// Limiter is the rate-limiting stage. Safe for concurrent use.
type Limiter struct {
	sites   atomic.Pointer[map[string]*site]
	shards  []shard
	perShrd int
	seed    maphash.Seed
	start   time.Time
	now     func() int64 // ns since start; replaced in tests

	blocked, logged atomic.Uint64
}

type bucketKey struct {
	rule string
	key  string
}

type shard struct {
	mu sync.Mutex
	m  map[bucketKey]int64 // theoretical arrival time (ns since start)
	_  [40]byte
}

// New returns a Limiter holding at most maxKeys buckets (DefaultMaxKeys when 0).
func New(maxKeys int) *Limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := 64
	if maxKeys < n {
		n = maxKeys
	}
	l := &Limiter{shards: make([]shard, n), perShrd: maxKeys / n, seed: maphash.MakeSeed(), start: time.Now()}
	for i := range l.shards {
		l.shards[i].m = make(map[bucketKey]int64)
	}
	l.now = func() int64 { return int64(time.Since(l.start)) }
	empty := map[string]*site{}
	l.sites.Store(&empty)
	return l
}

// Name is the stage's name.
func (l *Limiter) Name() string { return "ratelimit" }

// Update replaces the rules of every site at once. The rules should come from Compile;
// defaults are applied again and a rule that does not validate is ignored. Buckets of a
// rule whose site, position and rate are unchanged are kept.
func (l *Limiter) Update(sites []SiteRules) {
	m := make(map[string]*site, len(sites))
	for _, s := range sites {
		st := &site{trusted: append([]netip.Prefix(nil), s.TrustedProxies...)}
		for j, r := range s.Rules {
			c, errs := compileRule("", r)
			if len(errs) > 0 {
				continue
			}
			cr := rule{Rule: c}
			switch {
			case c.Key == "ip/24":
				cr.kind = keyIP24
			case strings.HasPrefix(c.Key, "header:"):
				cr.kind, cr.keyName = keyHeader, http.CanonicalHeaderKey(strings.TrimPrefix(c.Key, "header:"))
			case strings.HasPrefix(c.Key, "cookie:"):
				cr.kind, cr.keyName = keyCookie, strings.TrimPrefix(c.Key, "cookie:")
			}
			cr.Header = http.CanonicalHeaderKey(c.Header)
			cr.interval = int64(c.Period) / int64(c.Limit)
			if cr.interval < 1 {
				cr.interval = 1
			}
			cr.tau = cr.interval * int64(c.Burst)
			cr.id = s.Site + "\x00" + strconv.Itoa(j) + "\x00" + c.Key + "\x00" +
				strconv.FormatInt(cr.interval, 10) + "/" + strconv.Itoa(c.Burst)
			st.rules = append(st.rules, cr)
		}
		m[s.Site] = st
	}
	l.sites.Store(&m)
}

// Inline implements stages.Inline: a check is a few map operations under a shard lock, with
// no I/O, so it runs on the request's goroutine.
func (l *Limiter) Inline() bool { return true }

// Check applies the site's rules in order. The first rule whose bucket is empty and whose
// action is block refuses the request with 429 and Reason "rate-limited:<rule>"; a rule
// with action log only counts it.
func (l *Limiter) Check(ctx context.Context, r *http.Request, siteName string) (stages.Verdict, error) {
	st := (*l.sites.Load())[siteName]
	if st == nil || len(st.rules) == 0 {
		return stages.Verdict{}, nil
	}
	if err := ctx.Err(); err != nil {
		return stages.Verdict{}, err
	}
	var client netip.Addr
	var clientDone bool
	for i := range st.rules {
		ru := &st.rules[i]
		if !matches(ru, r) {
			continue
		}
		var key string
		switch ru.kind {
		case keyIP, keyIP24:
			if !clientDone {
				client, clientDone = clientip.Addr(r, st.trusted), true
			}
			if !client.IsValid() {
				continue
			}
			if ru.kind == keyIP24 {
				bits := 24
				if client.Is6() {
					bits = 64
				}
				p, _ := client.Prefix(bits)
				key = p.String()
			} else {
				key = client.String()
			}
		case keyHeader:
			key = r.Header.Get(ru.keyName)
			if key == "" {
				continue
			}
			key = shorten(key)
		case keyCookie:
			c, err := r.Cookie(ru.keyName)
			if err != nil || c.Value == "" {
				continue
			}
			key = shorten(c.Value)
		}
		ok, wait := l.allow(ru, key)
		if ok {
			continue
		}
		if ru.Action == ActionLog {
			l.logged.Add(1)
			continue
		}
		l.blocked.Add(1)
		return stages.Verdict{Block: true, Status: http.StatusTooManyRequests, Reason: "rate-limited:" + ru.Name,
			RetryAfter: time.Duration(wait)}, nil
	}
	return stages.Verdict{}, nil
}

func shorten(v string) string {
	if len(v) <= maxKeyLen {
		return v
	}
	h := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(h[:])
}

func matches(ru *rule, r *http.Request) bool {
	if ru.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, ru.PathPrefix) {
		return false
	}
	if len(ru.Methods) > 0 {
		ok := false
		for _, m := range ru.Methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if ru.Header != "" && len(r.Header[ru.Header]) == 0 {
		return false
	}
	return true
}

// allow takes one token from the bucket of (rule, key): GCRA. The bucket starts full
// (Burst requests at once) and refills at Limit per Period. Refused, it also says how long
// until the next token.
func (l *Limiter) allow(ru *rule, key string) (bool, int64) {
	bk := bucketKey{rule: ru.id, key: key}
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(bk.rule)
	h.WriteByte(0)
	h.WriteString(bk.key)
	sh := &l.shards[h.Sum64()%uint64(len(l.shards))]

	sh.mu.Lock()
	now := l.now()
	tat, ok := sh.m[bk]
	if !ok {
		if len(sh.m) >= l.perShrd {
			sh.evict(now)
		}
		tat = now
	}
	if tat < now {
		tat = now
	}
	next := tat + ru.interval
	if next-now > ru.tau { // never for a new key: Burst >= 1
		sh.mu.Unlock()
		return false, int64(next - now - ru.tau)
	}
	sh.m[bk] = next
	sh.mu.Unlock()
	return true, 0
}

// evict removes one entry, preferring a bucket that has refilled completely (losing it
// changes nothing). Map iteration starts at a random place.
func (sh *shard) evict(now int64) {
	var victim bucketKey
	n := 0
	for k, tat := range sh.m {
		if tat <= now {
			delete(sh.m, k)
			return
		}
		if n == 0 {
			victim = k
		}
		n++
		if n >= 8 {
			break
		}
	}
	if n > 0 {
		delete(sh.m, victim)
	}
}

// Stats are the limiter's figures.
type Stats struct {
	Keys    int    `json:"keys"`    // buckets held
	Blocked uint64 `json:"blocked"` // requests refused
	Logged  uint64 `json:"logged"`  // requests over a log rule's limit, let through
}

// Stats returns the limiter's figures.
func (l *Limiter) Stats() Stats {
	s := Stats{Blocked: l.blocked.Load(), Logged: l.logged.Load()}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		s.Keys += len(sh.m)
		sh.mu.Unlock()
	}
	return s
}
