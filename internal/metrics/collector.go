package metrics

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"rhizome/internal/mesh"
	"rhizome/internal/upstream"
)

// collector turns one Snapshot per scrape into constant metrics. Its descriptions are
// fixed at creation and all sent by Describe, so the registry checks every metric
// collected against them (a "checked" collector). It holds no state between scrapes.
type collector struct {
	read  func() Snapshot
	descs []*prometheus.Desc

	buildInfo *prometheus.Desc

	requests, responses, nodeErrors, panics, stageFailures *prometheus.Desc

	cacheHits, cacheMisses, cacheObjects, cacheBytes       *prometheus.Desc
	cacheEvictions, cacheMemoryEvictions, cachePurged      *prometheus.Desc
	upstreamPanicPicks, upstreamRetryTokens                *prometheus.Desc
	originUp, originEjected, originWeight                  *prometheus.Desc
	originRequests, originFailures, originErrorRatio       *prometheus.Desc
	originLatency, originInFlight                          *prometheus.Desc
	stageRuns, stageBlocks, stageErrors                    *prometheus.Desc
	stageTimeouts, stagePanics, stageBypasses, stageSlow   *prometheus.Desc
	rlKeys, rlBlocked, rlLogged                            *prometheus.Desc
	wafInspected, wafBlocked, wafDetected                  *prometheus.Desc
	wafOverLimit, wafTooLarge, wafReadErrors, wafOversized *prometheus.Desc
	botRequests, botVerified, botBlocked                   *prometheus.Desc
	dnsQueries, dnsRefused, dnsNXDomain, dnsNoData         *prometheus.Desc
	dnsFailOpen, dnsTruncated, dnsRateLimited              *prometheus.Desc
	meshMembers                                            *prometheus.Desc
	bundleSerial, bundleActivated, bundlePendingSerial     *prometheus.Desc
	bundlePendingWave, bundleHealthy, bundlesRefused       *prometheus.Desc
	killSwitches, draining                                 *prometheus.Desc
}

// Label names. Their values come from configuration or small fixed sets, never from a
// request (see the package documentation).
var (
	originLabels = []string{"site", "pool", "origin"}
	siteLabels   = []string{"site"}
	stageLabels  = []string{"stage"}
	classLabels  = []string{"class"}
	tierLabels   = []string{"tier"}
)

// statusClasses names proxy.Health.Responses' entries, in order.
var statusClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// memberStates are always reported, zero or not, so that a dashboard can tell "no dead
// members" from "no data". A state outside them is reported as it comes.
var memberStates = []string{mesh.StateAlive, mesh.StateSuspect, mesh.StateDead, mesh.StateLeft}

func newCollector(read func() Snapshot) *collector {
	c := &collector{read: read}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		desc := prometheus.NewDesc(name, help, labels, nil)
		c.descs = append(c.descs, desc)
		return desc
	}

	c.buildInfo = d("rhizome_build_info", "Always 1; its labels name this node, its region and provider, and the rhizome version it runs.", "version", "node", "region", "provider")

	c.requests = d("rhizome_requests_total", "Requests the node's proxy handler was given.")
	c.responses = d("rhizome_responses_total", "Responses sent by status class (1xx..5xx), origins' answers included.", "class")
	c.nodeErrors = d("rhizome_node_errors_total", "5xx answers the node made for a reason of its own (never an origin's error), plus panics that cut a response or hit background work.")
	c.panics = d("rhizome_panics_total", "Panics recovered on the request path and in the work it starts.")
	c.stageFailures = d("rhizome_stage_failures_total", "Stage errors, timeouts and panics across all stages (the stage was bypassed or refused the request).")

	c.cacheHits = d("rhizome_cache_hits_total", "Cache lookups that found an object.")
	c.cacheMisses = d("rhizome_cache_misses_total", "Cache lookups that found no object.")
	c.cacheObjects = d("rhizome_cache_objects", "Objects held in the cache, by tier (memory, disk).", tierLabels...)
	c.cacheBytes = d("rhizome_cache_bytes", "Bytes held in the cache, by tier: memory is bodies, keys and a header estimate; disk is object file sizes.", tierLabels...)
	c.cacheEvictions = d("rhizome_cache_evictions_total", "Objects that left the cache to keep it within its size bound.")
	c.cacheMemoryEvictions = d("rhizome_cache_memory_evictions_total", "Objects evicted from the memory tier, including those that stay on disk.")
	c.cachePurged = d("rhizome_cache_purged_total", "Objects removed from the cache by purge (URL, prefix or tag).")

	c.upstreamPanicPicks = d("rhizome_upstream_panic_picks_total", "Origin picks made while no origin of the site was available: requests went to origins believed unhealthy.", siteLabels...)
	c.upstreamRetryTokens = d("rhizome_upstream_retry_tokens", "Retries the site's retry budget would allow now.", siteLabels...)
	c.originUp = d("rhizome_origin_up", "1 when the origin is available (active check up or none, not ejected), else 0.", originLabels...)
	c.originEjected = d("rhizome_origin_ejected", "1 while outlier detection has ejected the origin (and its active check, if any, is up), else 0.", originLabels...)
	c.originWeight = d("rhizome_origin_weight", "Configured load-balancing weight of the origin within its pool.", originLabels...)
	c.originRequests = d("rhizome_origin_requests_total", "Attempts sent to the origin that ended with any result but a cancellation.", originLabels...)
	c.originFailures = d("rhizome_origin_failures_total", "Attempts to the origin that failed: connect errors, timeouts and other failures.", originLabels...)
	c.originErrorRatio = d("rhizome_origin_error_ratio", "Failures divided by attempts to the origin over the last 50 to 60 seconds.", originLabels...)
	c.originLatency = d("rhizome_origin_latency_seconds", "Smoothed (EWMA) time to response headers from the origin, as last updated; absent until the first response.", originLabels...)
	c.originInFlight = d("rhizome_origin_in_flight", "Requests to the origin in progress now.", originLabels...)

	c.stageRuns = d("rhizome_stage_runs_total", "Requests the stage checked.", stageLabels...)
	c.stageBlocks = d("rhizome_stage_blocks_total", "Requests the stage refused (answered itself instead of letting them through).", stageLabels...)
	c.stageErrors = d("rhizome_stage_errors_total", "Checks of the stage that returned an error.", stageLabels...)
	c.stageTimeouts = d("rhizome_stage_timeouts_total", "Checks of the stage that ran past their time budget, or were skipped because too many were still running.", stageLabels...)
	c.stagePanics = d("rhizome_stage_panics_total", "Checks of the stage that panicked.", stageLabels...)
	c.stageBypasses = d("rhizome_stage_bypasses_total", "Requests that skipped the stage: kill switch on, or the stage failed open.", stageLabels...)
	c.stageSlow = d("rhizome_stage_slow_total", "Checks run on the request's goroutine that finished past the stage's budget (their verdict stands; not a failure).", stageLabels...)

	c.rlKeys = d("rhizome_ratelimit_keys", "Rate-limit buckets held in memory now.")
	c.rlBlocked = d("rhizome_ratelimit_blocked_total", "Requests refused by a rate limit.")
	c.rlLogged = d("rhizome_ratelimit_logged_total", "Requests over a log-only rate limit, let through.")

	c.wafInspected = d("rhizome_waf_inspected_total", "Requests a site's WAF checked.")
	c.wafBlocked = d("rhizome_waf_blocked_total", "Requests refused by a WAF rule (mode block).")
	c.wafDetected = d("rhizome_waf_detected_total", "Requests a WAF rule would have refused (mode detect), let through.")
	c.wafOverLimit = d("rhizome_waf_body_over_limit_total", "Request bodies larger than the site's WAF body limit (inspected in part or refused).")
	c.wafTooLarge = d("rhizome_waf_body_too_large_total", "Request bodies refused with 413 for being over the WAF body limit.")
	c.wafReadErrors = d("rhizome_waf_body_read_errors_total", "Request bodies the client broke off or sent malformed (answered 400).")
	c.wafOversized = d("rhizome_waf_oversized_total", "Request lines or header sections over the WAF's bounds (answered 414 or 431).")

	c.botRequests = d("rhizome_bot_requests_total", "Requests the bot stage classified, by class (crawler categories, automated, human, spoofed).", classLabels...)
	c.botVerified = d("rhizome_bot_verified_total", "Requests whose crawler identity was verified, by class.", classLabels...)
	c.botBlocked = d("rhizome_bot_blocked_total", "Requests the bot stage refused, by class.", classLabels...)

	c.dnsQueries = d("rhizome_dns_queries_total", "DNS queries received, malformed ones included.")
	c.dnsRefused = d("rhizome_dns_refused_total", "DNS queries answered REFUSED: outside the served zones, wrong class, or AXFR.")
	c.dnsNXDomain = d("rhizome_dns_nxdomain_total", "DNS queries answered NXDOMAIN: the name does not exist.")
	c.dnsNoData = d("rhizome_dns_nodata_total", "DNS queries for a name that exists without the type asked (NODATA).")
	c.dnsFailOpen = d("rhizome_dns_fail_open_total", "DNS answers given while steering found no qualifying node (failed open).")
	c.dnsTruncated = d("rhizome_dns_truncated_total", "DNS responses sent truncated (TC=1) because they did not fit.")
	c.dnsRateLimited = d("rhizome_dns_rate_limited_total", "DNS responses slipped or dropped by the response rate limit.")

	c.meshMembers = d("rhizome_mesh_members", "Mesh members as this node sees them, by state (alive, suspect, dead, left).", "state")

	c.bundleSerial = d("rhizome_bundle_serial", "Serial of the bundle this node serves; 0: none.")
	c.bundleActivated = d("rhizome_bundle_activated_timestamp_seconds", "When the active bundle was swapped in, in seconds since the Unix epoch; absent when none is.")
	c.bundlePendingSerial = d("rhizome_bundle_pending_serial", "Serial of a bundle received and held until its rollout wave; 0: none.")
	c.bundlePendingWave = d("rhizome_bundle_pending_wave", "Rollout wave the pending bundle waits for.")
	c.bundleHealthy = d("rhizome_bundle_healthy", "1 when this node judges its active bundle healthy, else 0 (an unhealthy node halts the rollout).")
	c.bundlesRefused = d("rhizome_bundles_refused_total", "Bundles this node refused since start: failed verification, validation or self-test, or not newer than the one it holds.")
	c.killSwitches = d("rhizome_kill_switches", "Kill switches on now.")
	c.draining = d("rhizome_draining", "1 while the node is drained (taken out of DNS answers by the operator), else 0.")
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one read, then one constant metric per figure.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.snapshot()
	if err != nil {
		// The registry gathers on its own goroutine, where a panic would end the process:
		// report it as a failed metric instead, and the Go and process metrics still serve.
		ch <- prometheus.NewInvalidMetric(c.buildInfo, err)
		return
	}
	m := emitter{ch}

	m.gauge(c.buildInfo, 1, s.Version, s.Node, s.Region, s.Provider)

	t := s.Traffic
	m.counter(c.requests, float64(t.Requests))
	for i, n := range t.Responses {
		m.counter(c.responses, float64(n), statusClasses[i])
	}
	m.counter(c.nodeErrors, float64(t.NodeErrors))
	m.counter(c.panics, float64(t.Panics))
	m.counter(c.stageFailures, float64(t.StageFailures))

	if cs := s.Cache; cs != nil {
		m.counter(c.cacheHits, float64(cs.Hits))
		m.counter(c.cacheMisses, float64(cs.Misses))
		m.gauge(c.cacheObjects, float64(cs.MemoryObjects), "memory")
		m.gauge(c.cacheObjects, float64(cs.DiskObjects), "disk")
		m.gauge(c.cacheBytes, float64(cs.MemoryBytes), "memory")
		m.gauge(c.cacheBytes, float64(cs.DiskBytes), "disk")
		m.counter(c.cacheEvictions, float64(cs.Evictions))
		m.counter(c.cacheMemoryEvictions, float64(cs.MemoryEvictions))
		m.counter(c.cachePurged, float64(cs.Purged))
	}

	c.collectUpstreams(m, s.Upstreams)

	for name, sc := range s.Stages {
		m.counter(c.stageRuns, float64(sc.Runs), name)
		m.counter(c.stageBlocks, float64(sc.Blocks), name)
		m.counter(c.stageErrors, float64(sc.Errors), name)
		m.counter(c.stageTimeouts, float64(sc.Timeouts), name)
		m.counter(c.stagePanics, float64(sc.Panics), name)
		m.counter(c.stageBypasses, float64(sc.Bypasses), name)
		m.counter(c.stageSlow, float64(sc.Slow), name)
	}

	m.gauge(c.rlKeys, float64(s.RateLimit.Keys))
	m.counter(c.rlBlocked, float64(s.RateLimit.Blocked))
	m.counter(c.rlLogged, float64(s.RateLimit.Logged))

	w := s.WAF
	m.counter(c.wafInspected, float64(w.Inspected))
	m.counter(c.wafBlocked, float64(w.Blocked))
	m.counter(c.wafDetected, float64(w.Detected))
	m.counter(c.wafOverLimit, float64(w.OverLimit))
	m.counter(c.wafTooLarge, float64(w.TooLarge))
	m.counter(c.wafReadErrors, float64(w.ReadErrors))
	m.counter(c.wafOversized, float64(w.Oversized))

	for class, bc := range s.Bots {
		m.counter(c.botRequests, float64(bc.Seen), class)
		m.counter(c.botVerified, float64(bc.Verified), class)
		m.counter(c.botBlocked, float64(bc.Blocked), class)
	}

	if ds := s.DNS; ds != nil {
		m.counter(c.dnsQueries, float64(ds.Queries))
		m.counter(c.dnsRefused, float64(ds.Refused))
		m.counter(c.dnsNXDomain, float64(ds.NXDomain))
		m.counter(c.dnsNoData, float64(ds.NoData))
		m.counter(c.dnsFailOpen, float64(ds.FailOpen))
		m.counter(c.dnsTruncated, float64(ds.Truncated))
		m.counter(c.dnsRateLimited, float64(ds.RateLimited))
	}

	states := make(map[string]int, len(memberStates))
	for _, st := range memberStates {
		states[st] = 0
	}
	for _, mb := range s.Members {
		states[mb.State]++
	}
	for st, n := range states {
		m.gauge(c.meshMembers, float64(n), st)
	}

	b := s.Bundle
	m.gauge(c.bundleSerial, float64(b.ActiveSerial))
	if !b.Activated.IsZero() {
		m.gauge(c.bundleActivated, float64(b.Activated.UnixNano())/1e9)
	}
	m.gauge(c.bundlePendingSerial, float64(b.PendingSerial))
	m.gauge(c.bundlePendingWave, float64(b.PendingWave))
	m.gauge(c.bundleHealthy, boolValue(b.Healthy))
	m.counter(c.bundlesRefused, float64(b.Refused))
	m.gauge(c.killSwitches, float64(b.KillSwitches))
	m.gauge(c.draining, boolValue(b.Draining))
}

// collectUpstreams reports each site's budget and each origin's state and counters.
func (c *collector) collectUpstreams(m emitter, groups []upstream.GroupStatus) {
	type key struct{ site, pool, origin string }
	for _, g := range groups {
		m.counter(c.upstreamPanicPicks, float64(g.PanicPicks), g.Key)
		m.gauge(c.upstreamRetryTokens, g.RetryTokens, g.Key)

		// A URL listed twice in a pool appears twice in the status, sharing one state
		// (upstream keys state by pool and URL). Two series with the same labels would
		// fail the scrape, so report it once, with its entries' weights added up: that is
		// its share of the pool's picks.
		var order []key
		seen := map[key]upstream.OriginStatus{}
		for _, p := range g.Pools {
			for _, o := range p.Origins {
				k := key{g.Key, p.Name, o.URL}
				if prev, ok := seen[k]; ok {
					prev.Weight += o.Weight
					seen[k] = prev
					continue
				}
				seen[k] = o
				order = append(order, k)
			}
		}
		for _, k := range order {
			o := seen[k]
			lv := []string{k.site, k.pool, k.origin}
			m.gauge(c.originUp, boolValue(o.State == upstream.StateHealthy), lv...)
			m.gauge(c.originEjected, boolValue(o.State == upstream.StateEjected), lv...)
			m.gauge(c.originWeight, float64(o.Weight), lv...)
			m.counter(c.originRequests, float64(o.Requests), lv...)
			m.counter(c.originFailures, float64(o.Failures), lv...)
			m.gauge(c.originErrorRatio, o.ErrorRate, lv...)
			if o.LatencyEWMAms > 0 { // 0 means no observation yet, not an instant origin
				m.gauge(c.originLatency, o.LatencyEWMAms/1e3, lv...)
			}
			m.gauge(c.originInFlight, float64(o.Inflight), lv...)
		}
	}
}

// snapshot calls read, turning a panic in it into an error.
func (c *collector) snapshot() (s Snapshot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reading the node's figures: panic: %v", p)
		}
	}()
	return c.read(), nil
}

// emitter sends constant metrics. A label value that Prometheus refuses (not UTF-8)
// becomes an invalid metric, which fails that series alone, instead of the panic of
// MustNewConstMetric on the registry's goroutine.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.CounterValue, v, labels)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.GaugeValue, v, labels)
}

func (e emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, fmt.Errorf("labels %s: %w", strconv.Quote(fmt.Sprint(labels)), err))
	}
	e.ch <- m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
