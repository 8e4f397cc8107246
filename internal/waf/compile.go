package waf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"
)

// Set is the compiled WAFs of every site that has one. Immutable, safe for concurrent use.
type Set struct {
	sites map[string]*siteWAF
}

// siteWAF is one site's compiled WAF. The engine may be shared with other sites (and other
// Sets) whose settings differ only in mode or over_limit.
type siteWAF struct {
	engine  coraza.WAF
	detect  bool           // log and count, never block
	reject  bool           // a body over limit gets 413
	limit   int64          // body bytes inspected
	trusted []netip.Prefix // the site's trusted proxies, for the client address
}

// Compile builds a Set from per-site configs (sites not in the map have no WAF). Every config
// is validated first; errors name the site (`sites["example.com"].waf.paranoia: ...`) and are
// joined. Compiling the CRS costs 20-100 ms (the first compile of a process is the slow one:
// Coraza memoizes compiled regexps across engines) and some 10-20 MB per distinct config, so
// engines are kept in a small package-level cache keyed by the canonical config (the
// cacheSize most recently used): re-applying an unchanged bundle compiles nothing. Distinct
// new configs are compiled in parallel. More than MaxEngines distinct engines (see
// DistinctEngines) is an error: a bundle must not make every node compile hundreds.
func Compile(sites map[string]Config) (*Set, error) {
	names := make([]string, 0, len(sites))
	for name := range sites {
		names = append(names, name)
	}
	slices.Sort(names) // errors in a stable order
	var errs []error
	norm := make(map[string]Config, len(sites))
	for _, name := range names {
		c := sites[name]
		if verrs := c.Validate(fmt.Sprintf("sites[%q].waf", name)); len(verrs) > 0 {
			errs = append(errs, verrs...)
			continue
		}
		norm[name] = c.normalized()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	keys := map[string]Config{}
	for _, c := range norm {
		keys[c.engineKey()] = c
	}
	if len(keys) > MaxEngines {
		return nil, fmt.Errorf("%d distinct WAF configurations (paranoia, anomaly_threshold, body_limit, exclusions): at most %d (MaxEngines); sites that differ only in mode or over_limit share one", len(keys), MaxEngines)
	}
	engines := make(map[string]coraza.WAF, len(keys))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for key, c := range keys {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			w, err := engineFor(key, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			engines[key] = w
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	set := &Set{sites: make(map[string]*siteWAF, len(norm))}
	for name, c := range norm {
		set.sites[name] = &siteWAF{
			engine:  engines[c.engineKey()],
			detect:  c.Mode == ModeDetect,
			reject:  c.OverLimit == OverLimitReject,
			limit:   c.BodyLimit,
			trusted: slices.Clone(c.TrustedProxies),
		}
	}
	return set, nil
}

// cacheSize bounds the engine cache: enough for every distinct WAF setting of a typical
// bundle, small enough that the engines held (10-20 MB each, less when they share memoized
// regexps) stay modest.
const cacheSize = 16

type cacheEntry struct {
	done chan struct{} // closed when engine and err are set
	eng  coraza.WAF
	err  error
	used uint64 // cache.tick at the last use
}

var cache = struct {
	mu   sync.Mutex
	m    map[string]*cacheEntry
	tick uint64
}{m: map[string]*cacheEntry{}}

// engineFor returns the engine for a normalized config, from the cache or compiled. Callers
// asking for the same key at once share one compilation. Failures are not cached.
func engineFor(key string, c Config) (coraza.WAF, error) {
	cache.mu.Lock()
	cache.tick++
	if e, ok := cache.m[key]; ok {
		e.used = cache.tick
		cache.mu.Unlock()
		<-e.done
		return e.eng, e.err
	}
	e := &cacheEntry{done: make(chan struct{}), used: cache.tick}
	cache.m[key] = e
	evictLocked()
	cache.mu.Unlock()

	e.eng, e.err = newEngine(c)
	close(e.done)
	if e.err != nil {
		cache.mu.Lock()
		if cache.m[key] == e {
			delete(cache.m, key)
		}
		cache.mu.Unlock()
	}
	return e.eng, e.err
}

// evictLocked drops the least recently used finished entries beyond cacheSize. Entries
// still compiling are never dropped (their waiters hold them anyway).
func evictLocked() {
	for len(cache.m) > cacheSize {
		var oldKey string
		var old *cacheEntry
		for k, e := range cache.m {
			select {
			case <-e.done:
			default:
				continue
			}
			if old == nil || e.used < old.used {
				oldKey, old = k, e
			}
		}
		if old == nil {
			return
		}
		delete(cache.m, oldKey)
	}
}

// Rule ids of our own rules: below the ranges of the CRS (900000-999999) and of
// coraza.conf-recommended (200000-200999), so that they never collide.
const (
	idTruncated       = 9990  // a body cut at the limit: its parse errors do not block
	idExclusionsStart = 10000 // one rule per path-prefix exclusion
)

// ambiguousPath matches a raw request URI whose path (what precedes "?" or "#") holds a
// dot-segment ending in ";" ("..;", dots perhaps encoded), a backslash or an encoded
// backslash or semicolon, in any case: paths that a Tomcat, Spring or IIS origin may resolve
// out of an excluded prefix. \x5c is the backslash, written so that no backslash escapes
// anything in the SecLang string.
const ambiguousPath = `(?i)^[^?#]*(?:(?:\.|%2e){2};|\x5c|%5c|%3b)`

// allowedMethods widens the CRS default (GET HEAD POST OPTIONS): we front REST APIs, and
// refusing every PUT, PATCH and DELETE at paranoia level 1 (rule 911100) would be a false
// positive on most of them.
const allowedMethods = "GET HEAD POST OPTIONS PUT PATCH DELETE"

// directives returns the SecLang configuration of a normalized config.
func directives(c Config) string {
	var b strings.Builder
	// A body cut at the limit (inspect_partial) does not parse as JSON, XML or multipart;
	// that must not block it. Coraza sets INBOUND_DATA_ERROR when the body reaches its
	// SecRequestBodyLimit, which is the site's limit plus one: a body of exactly the limit
	// is not cut and does not set it; the stage hands Coraza limit+1 bytes of a body it cut,
	// so that it does. The rule comes first so that it runs before coraza.conf-recommended's
	// 200002/200003.
	fmt.Fprintf(&b, "SecRule INBOUND_DATA_ERROR \"@eq 1\" \"id:%d,phase:2,pass,t:none,nolog,ctl:ruleRemoveById=200002,ctl:ruleRemoveById=200003\"\n", idTruncated)
	b.WriteString("Include @coraza.conf-recommended\n")
	// Overrides of the recommended file: enforce; inspect request bodies in memory only
	// (in-memory limit = limit: no temporary files), the stage has cut them to the limit
	// (plus one byte) already, so ProcessPartial; no response inspection; no audit log.
	fmt.Fprintf(&b, `SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit %d
SecRequestBodyInMemoryLimit %d
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess Off
SecAuditEngine Off
`, c.BodyLimit+1, c.BodyLimit+1)
	b.WriteString("Include @crs-setup.conf.example\n")
	// After the example setup, so that nothing it sets wins over the site's values; the
	// CRS initialization rules only set what is still unset.
	fmt.Fprintf(&b, "SecAction \"id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d\"\n", c.Paranoia)
	fmt.Fprintf(&b, "SecAction \"id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=4\"\n", c.AnomalyThreshold)
	fmt.Fprintf(&b, "SecAction \"id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=%s'\"\n", allowedMethods)
	// Path-prefix exclusions run before the CRS rules, which they remove for this request.
	// The path is normalized first so that /excluded/../elsewhere gets no exclusion. A raw
	// path that some origin servers resolve differently gets none either (the chained rule):
	// "..;" (Tomcat and Spring read /excluded/..;/admin as /admin), a backslash (IIS reads
	// /excluded\..\admin as /admin) and an encoded backslash or semicolon.
	var global []int
	id := idExclusionsStart
	for _, e := range c.Exclusions {
		if e.PathPrefix == "" {
			global = append(global, e.IDs...)
			continue
		}
		// The ctl actions go on the chain's last rule: Coraza runs a chain's first rule's
		// non-disruptive actions when that rule matches, whatever the rest of the chain does.
		fmt.Fprintf(&b, "SecRule REQUEST_FILENAME \"@beginsWith %s\" \"id:%d,phase:1,pass,t:none,t:normalizePath,nolog,chain\"\n", e.PathPrefix, id)
		fmt.Fprintf(&b, "  SecRule REQUEST_URI_RAW \"!@rx %s\" \"t:none", ambiguousPath)
		for _, rid := range e.IDs {
			fmt.Fprintf(&b, ",ctl:ruleRemoveById=%d", rid)
		}
		b.WriteString("\"\n")
		id++
	}
	b.WriteString("Include @owasp_crs/*.conf\n")
	if len(global) > 0 {
		b.WriteString("SecRuleRemoveById")
		for _, rid := range global {
			b.WriteString(" " + strconv.Itoa(rid))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// newEngine compiles the CRS for a normalized config.
func newEngine(c Config) (coraza.WAF, error) {
	cfg := coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithErrorCallback(logMatch).
		WithDirectives(directives(c))
	w, err := coraza.NewWAF(cfg)
	if err != nil {
		return nil, fmt.Errorf("compile the Core Rule Set (paranoia %d, threshold %d): %w", c.Paranoia, c.AnomalyThreshold, err)
	}
	return w, nil
}

// logMatch receives what Coraza would write to its error log (every matched rule that
// logs): debugging detail, as the stage logs its decisions itself. Engines are shared by
// sites, so it cannot say which site; the transaction id and URI tie it to a request.
func logMatch(m types.MatchedRule) {
	l := slog.Default()
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	l.Debug("waf rule matched", "rule", m.Rule().ID(), "tx", m.TransactionID(), "uri", truncate(m.URI(), maxLogURI), "msg", m.Message())
}
