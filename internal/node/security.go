package node

import (
	"fmt"
	"net/netip"
	"time"

	"rhizome/internal/bots"
	"rhizome/internal/bundle"
	"rhizome/internal/ratelimit"
	"rhizome/internal/snapshot"
	"rhizome/internal/stages"
	"rhizome/internal/waf"
)

// security is a bundle's request-stage settings, compiled when the bundle is checked (so
// that one that does not compile is refused like any invalid bundle) and handed to the
// stages when it activates.
type security struct {
	rate  []ratelimit.SiteRules
	waf   *waf.Set
	bots  *bots.Set
	modes map[string]stages.Mode // by site + "\x00" + stage
}

// compileSecurity compiles cfg's stage settings. The WAF's rule sets are the costly part
// (about 0.1 s for the first, 20 ms for each other distinct configuration: BenchmarkCompile);
// the waf package reuses them across bundles.
func compileSecurity(cfg *bundle.Config, snap *snapshot.Snapshot) (*security, error) {
	sec := &security{modes: map[string]stages.Mode{}}
	trusted := map[string][]netip.Prefix{}
	for _, site := range snap.Sites() {
		trusted[site.Name] = site.TrustedProxies
	}
	wafs := map[string]waf.Config{}
	botSites := map[string]bots.SiteConfig{}
	for i := range cfg.Sites {
		bs := &cfg.Sites[i]
		for _, m := range bs.StageModes {
			sec.modes[bs.Name+"\x00"+m.Stage] = stages.Mode{FailClosed: m.FailClosed, Budget: time.Duration(m.Budget)}
		}
		rules, err := ratelimit.Compile(fmt.Sprintf("sites[%d].rate_limits", i), bs.RateRules())
		if err != nil {
			return nil, err
		}
		if len(rules) > 0 {
			sec.rate = append(sec.rate, ratelimit.SiteRules{Site: bs.Name, Rules: rules, TrustedProxies: trusted[bs.Name]})
		}
		if w, ok := bs.WAFConfig(); ok {
			w.TrustedProxies = trusted[bs.Name]
			wafs[bs.Name] = w
		}
		if bs.Bots != nil {
			botSites[bs.Name] = bots.SiteConfig{Policy: *bs.Bots, TrustedProxies: trusted[bs.Name]}
		}
	}
	var err error
	if len(wafs) > 0 {
		if sec.waf, err = waf.Compile(wafs); err != nil {
			return nil, fmt.Errorf("waf: %w", err)
		}
	}
	if sec.bots, err = bots.NewSet(cfg.CrawlerList(), botSites); err != nil {
		return nil, fmt.Errorf("bots: %w", err)
	}
	return sec, nil
}
