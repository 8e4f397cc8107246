package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"rhizome/internal/bots"
	"rhizome/internal/cache"
	"rhizome/internal/dns"
	"rhizome/internal/mesh"
	"rhizome/internal/proxy"
	"rhizome/internal/ratelimit"
	"rhizome/internal/stages"
	"rhizome/internal/upstream"
	"rhizome/internal/waf"
)

var activated = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fullSnapshot has a distinct figure in every field, so a value read from the wrong field
// shows.
func fullSnapshot() Snapshot {
	return Snapshot{
		Node: "edge-1", Region: "eu-west", Provider: "hetzner", Version: "v1.2.3",
		Traffic: proxy.Health{Requests: 1000, Responses: [5]uint64{1, 900, 30, 50, 19}, NodeErrors: 3, Panics: 2, StageFailures: 7},
		Cache: &cache.Stats{
			MemoryObjects: 11, DiskObjects: 12, MemoryBytes: 1300, DiskBytes: 1400,
			Hits: 15, Misses: 16, Evictions: 17, MemoryEvictions: 18, Purged: 19,
		},
		Upstreams: []upstream.GroupStatus{{
			Key: "shop", PanicPicks: 4, RetryTokens: 9.5,
			Pools: []upstream.PoolStatus{
				{Name: "primary", Origins: []upstream.OriginStatus{
					{URL: "https://a.example", Weight: 10, State: upstream.StateHealthy, LatencyEWMAms: 250, Inflight: 3, Requests: 500, Failures: 5, ErrorRate: 0.01},
					{URL: "https://b.example", Weight: 5, State: upstream.StateEjected, Requests: 40, Failures: 20, ErrorRate: 0.5},
					// Listed twice: upstream shares one state, so one series, weights added.
					{URL: "https://a.example", Weight: 7, State: upstream.StateHealthy, LatencyEWMAms: 250, Inflight: 3, Requests: 500, Failures: 5, ErrorRate: 0.01},
				}},
				{Name: "backup", Origins: []upstream.OriginStatus{
					{URL: "https://a.example", Weight: 1, State: upstream.StateUnhealthy, LatencyEWMAms: 1500, Requests: 8, Failures: 8},
				}},
			},
		}},
		Stages: map[string]stages.Counters{
			"ratelimit": {Runs: 100, Blocks: 10},
			"waf":       {Runs: 90, Blocks: 5, Errors: 1, Timeouts: 2, Panics: 3, Bypasses: 4},
		},
		RateLimit: ratelimit.Stats{Keys: 42, Blocked: 10, Logged: 6},
		WAF:       waf.Stats{Inspected: 90, Blocked: 5, Detected: 6, OverLimit: 7, TooLarge: 8, ReadErrors: 9, Oversized: 10},
		Bots: map[string]bots.ClassCounts{
			"search":  {Seen: 50, Verified: 45, Blocked: 0},
			"spoofed": {Seen: 5, Blocked: 5},
		},
		DNS: &dns.Stats{Queries: 200, Refused: 1, NXDomain: 2, NoData: 3, FailOpen: 4, Truncated: 5, RateLimited: 6},
		Members: []mesh.Member{
			{Name: "edge-1", State: mesh.StateAlive}, {Name: "edge-2", State: mesh.StateAlive},
			{Name: "edge-3", State: mesh.StateDead}, {Name: "edge-4", State: mesh.StateLeft},
		},
		Bundle: Bundle{
			ActiveSerial: 17, Activated: activated, PendingSerial: 18, PendingWave: 2,
			Healthy: true, Refused: 1, KillSwitches: 2, Draining: false,
		},
	}
}

// scrape fetches url and parses the text format into families by name.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// fetch is scrape for goroutines other than the test's, where t.Fatal must not be called.
func fetch(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return fams, nil
}

// value returns the value of the series of family name whose labels are exactly labels
// ("k=v" pairs), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := strings.Join(labels, ",")
	for _, m := range f.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(got)
		if strings.Join(got, ",") != want {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func serve(t *testing.T, read func() Snapshot) string {
	t.Helper()
	srv := httptest.NewServer(Handler(read))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func TestScrape(t *testing.T) {
	fams := scrape(t, serve(t, fullSnapshot))
	site := func(pool, origin string) []string {
		return []string{"origin=" + origin, "pool=" + pool, "site=shop"} // sorted by name
	}
	tests := []struct {
		name   string
		metric string
		labels []string
		typ    dto.MetricType
		want   float64
	}{
		{"build info", "rhizome_build_info", []string{"node=edge-1", "provider=hetzner", "region=eu-west", "version=v1.2.3"}, dto.MetricType_GAUGE, 1},
		{"requests", "rhizome_requests_total", nil, dto.MetricType_COUNTER, 1000},
		{"2xx", "rhizome_responses_total", []string{"class=2xx"}, dto.MetricType_COUNTER, 900},
		{"1xx", "rhizome_responses_total", []string{"class=1xx"}, dto.MetricType_COUNTER, 1},
		{"5xx", "rhizome_responses_total", []string{"class=5xx"}, dto.MetricType_COUNTER, 19},
		{"node errors", "rhizome_node_errors_total", nil, dto.MetricType_COUNTER, 3},
		{"panics", "rhizome_panics_total", nil, dto.MetricType_COUNTER, 2},
		{"stage failures", "rhizome_stage_failures_total", nil, dto.MetricType_COUNTER, 7},

		{"cache hits", "rhizome_cache_hits_total", nil, dto.MetricType_COUNTER, 15},
		{"cache misses", "rhizome_cache_misses_total", nil, dto.MetricType_COUNTER, 16},
		{"memory objects", "rhizome_cache_objects", []string{"tier=memory"}, dto.MetricType_GAUGE, 11},
		{"disk objects", "rhizome_cache_objects", []string{"tier=disk"}, dto.MetricType_GAUGE, 12},
		{"memory bytes", "rhizome_cache_bytes", []string{"tier=memory"}, dto.MetricType_GAUGE, 1300},
		{"disk bytes", "rhizome_cache_bytes", []string{"tier=disk"}, dto.MetricType_GAUGE, 1400},
		{"evictions", "rhizome_cache_evictions_total", nil, dto.MetricType_COUNTER, 17},
		{"memory evictions", "rhizome_cache_memory_evictions_total", nil, dto.MetricType_COUNTER, 18},
		{"purged", "rhizome_cache_purged_total", nil, dto.MetricType_COUNTER, 19},

		{"panic picks", "rhizome_upstream_panic_picks_total", []string{"site=shop"}, dto.MetricType_COUNTER, 4},
		{"retry tokens", "rhizome_upstream_retry_tokens", []string{"site=shop"}, dto.MetricType_GAUGE, 9.5},
		{"healthy up", "rhizome_origin_up", site("primary", "https://a.example"), dto.MetricType_GAUGE, 1},
		{"ejected down", "rhizome_origin_up", site("primary", "https://b.example"), dto.MetricType_GAUGE, 0},
		{"unhealthy down", "rhizome_origin_up", site("backup", "https://a.example"), dto.MetricType_GAUGE, 0},
		{"ejected", "rhizome_origin_ejected", site("primary", "https://b.example"), dto.MetricType_GAUGE, 1},
		{"unhealthy not ejected", "rhizome_origin_ejected", site("backup", "https://a.example"), dto.MetricType_GAUGE, 0},
		{"duplicate weights added", "rhizome_origin_weight", site("primary", "https://a.example"), dto.MetricType_GAUGE, 17},
		{"origin requests", "rhizome_origin_requests_total", site("primary", "https://a.example"), dto.MetricType_COUNTER, 500},
		{"origin failures", "rhizome_origin_failures_total", site("primary", "https://b.example"), dto.MetricType_COUNTER, 20},
		{"error ratio", "rhizome_origin_error_ratio", site("primary", "https://b.example"), dto.MetricType_GAUGE, 0.5},
		{"latency in seconds", "rhizome_origin_latency_seconds", site("primary", "https://a.example"), dto.MetricType_GAUGE, 0.25},
		{"latency other pool", "rhizome_origin_latency_seconds", site("backup", "https://a.example"), dto.MetricType_GAUGE, 1.5},
		{"in flight", "rhizome_origin_in_flight", site("primary", "https://a.example"), dto.MetricType_GAUGE, 3},

		{"stage runs", "rhizome_stage_runs_total", []string{"stage=waf"}, dto.MetricType_COUNTER, 90},
		{"stage blocks", "rhizome_stage_blocks_total", []string{"stage=ratelimit"}, dto.MetricType_COUNTER, 10},
		{"stage errors", "rhizome_stage_errors_total", []string{"stage=waf"}, dto.MetricType_COUNTER, 1},
		{"stage timeouts", "rhizome_stage_timeouts_total", []string{"stage=waf"}, dto.MetricType_COUNTER, 2},
		{"stage panics", "rhizome_stage_panics_total", []string{"stage=waf"}, dto.MetricType_COUNTER, 3},
		{"stage bypasses", "rhizome_stage_bypasses_total", []string{"stage=waf"}, dto.MetricType_COUNTER, 4},

		{"ratelimit keys", "rhizome_ratelimit_keys", nil, dto.MetricType_GAUGE, 42},
		{"ratelimit blocked", "rhizome_ratelimit_blocked_total", nil, dto.MetricType_COUNTER, 10},
		{"ratelimit logged", "rhizome_ratelimit_logged_total", nil, dto.MetricType_COUNTER, 6},

		{"waf inspected", "rhizome_waf_inspected_total", nil, dto.MetricType_COUNTER, 90},
		{"waf blocked", "rhizome_waf_blocked_total", nil, dto.MetricType_COUNTER, 5},
		{"waf detected", "rhizome_waf_detected_total", nil, dto.MetricType_COUNTER, 6},
		{"waf over limit", "rhizome_waf_body_over_limit_total", nil, dto.MetricType_COUNTER, 7},
		{"waf too large", "rhizome_waf_body_too_large_total", nil, dto.MetricType_COUNTER, 8},
		{"waf read errors", "rhizome_waf_body_read_errors_total", nil, dto.MetricType_COUNTER, 9},
		{"waf oversized", "rhizome_waf_oversized_total", nil, dto.MetricType_COUNTER, 10},

		{"bot seen", "rhizome_bot_requests_total", []string{"class=search"}, dto.MetricType_COUNTER, 50},
		{"bot verified", "rhizome_bot_verified_total", []string{"class=search"}, dto.MetricType_COUNTER, 45},
		{"bot blocked", "rhizome_bot_blocked_total", []string{"class=spoofed"}, dto.MetricType_COUNTER, 5},

		{"dns queries", "rhizome_dns_queries_total", nil, dto.MetricType_COUNTER, 200},
		{"dns refused", "rhizome_dns_refused_total", nil, dto.MetricType_COUNTER, 1},
		{"dns nxdomain", "rhizome_dns_nxdomain_total", nil, dto.MetricType_COUNTER, 2},
		{"dns nodata", "rhizome_dns_nodata_total", nil, dto.MetricType_COUNTER, 3},
		{"dns fail open", "rhizome_dns_fail_open_total", nil, dto.MetricType_COUNTER, 4},
		{"dns truncated", "rhizome_dns_truncated_total", nil, dto.MetricType_COUNTER, 5},
		{"dns rate limited", "rhizome_dns_rate_limited_total", nil, dto.MetricType_COUNTER, 6},

		{"alive", "rhizome_mesh_members", []string{"state=alive"}, dto.MetricType_GAUGE, 2},
		{"suspect reported as zero", "rhizome_mesh_members", []string{"state=suspect"}, dto.MetricType_GAUGE, 0},
		{"dead", "rhizome_mesh_members", []string{"state=dead"}, dto.MetricType_GAUGE, 1},
		{"left", "rhizome_mesh_members", []string{"state=left"}, dto.MetricType_GAUGE, 1},

		{"serial", "rhizome_bundle_serial", nil, dto.MetricType_GAUGE, 17},
		{"activated", "rhizome_bundle_activated_timestamp_seconds", nil, dto.MetricType_GAUGE, float64(activated.Unix())},
		{"pending serial", "rhizome_bundle_pending_serial", nil, dto.MetricType_GAUGE, 18},
		{"pending wave", "rhizome_bundle_pending_wave", nil, dto.MetricType_GAUGE, 2},
		{"healthy", "rhizome_bundle_healthy", nil, dto.MetricType_GAUGE, 1},
		{"refused", "rhizome_bundles_refused_total", nil, dto.MetricType_COUNTER, 1},
		{"kill switches", "rhizome_kill_switches", nil, dto.MetricType_GAUGE, 2},
		{"draining", "rhizome_draining", nil, dto.MetricType_GAUGE, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fams[tt.metric]
			if f == nil {
				t.Fatalf("%s missing", tt.metric)
			}
			if f.GetType() != tt.typ {
				t.Errorf("%s type %v, want %v", tt.metric, f.GetType(), tt.typ)
			}
			if f.GetHelp() == "" {
				t.Errorf("%s has no HELP", tt.metric)
			}
			got, ok := value(fams, tt.metric, tt.labels...)
			if !ok {
				t.Fatalf("%s%v missing", tt.metric, tt.labels)
			}
			if got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}

	t.Run("series counts", func(t *testing.T) {
		for name, want := range map[string]int{
			"rhizome_responses_total":    5, // one per class, zero or not
			"rhizome_origin_up":          3, // a.example listed twice in primary: once
			"rhizome_mesh_members":       4,
			"rhizome_stage_runs_total":   2,
			"rhizome_bot_requests_total": 2,
		} {
			if got := len(fams[name].GetMetric()); got != want {
				t.Errorf("%s: %d series, want %d", name, got, want)
			}
		}
	})
	t.Run("no latency before the first response", func(t *testing.T) {
		if v, ok := value(fams, "rhizome_origin_latency_seconds", site("primary", "https://b.example")...); ok {
			t.Errorf("b.example latency = %v, want no series", v)
		}
	})
	t.Run("standard collectors", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes"} {
			if fams[name] == nil {
				t.Errorf("%s missing", name)
			}
		}
	})
}

// TestSparseSnapshot scrapes what a node without cache, DNS, mesh or bundle reports.
func TestSparseSnapshot(t *testing.T) {
	tests := []struct {
		name string
		snap Snapshot
	}{
		{"empty", Snapshot{}},
		{"nil cache and dns", func() Snapshot { s := fullSnapshot(); s.Cache, s.DNS = nil, nil; return s }()},
		{"no members, no bundle", func() Snapshot {
			s := fullSnapshot()
			s.Members, s.Bundle, s.Upstreams, s.Stages, s.Bots = nil, Bundle{}, nil, nil, nil
			return s
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fams := scrape(t, serve(t, func() Snapshot { return tt.snap }))
			if bi := fams["rhizome_build_info"].GetMetric(); len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 {
				t.Errorf("rhizome_build_info = %v, want one series of 1", bi)
			}
			if tt.snap.Cache == nil && fams["rhizome_cache_hits_total"] != nil {
				t.Errorf("cache series without a cache")
			}
			if tt.snap.DNS == nil && fams["rhizome_dns_queries_total"] != nil {
				t.Errorf("DNS series without DNS")
			}
			if tt.snap.Bundle.Activated.IsZero() && fams["rhizome_bundle_activated_timestamp_seconds"] != nil {
				t.Errorf("activation timestamp without an activation")
			}
			if v, ok := value(fams, "rhizome_mesh_members", "state=alive"); !ok || v != float64(countState(tt.snap.Members, mesh.StateAlive)) {
				t.Errorf("alive members = %v, %v", v, ok)
			}
			for _, name := range []string{"rhizome_requests_total", "rhizome_bundle_serial", "rhizome_waf_inspected_total", "rhizome_ratelimit_keys"} {
				if fams[name] == nil {
					t.Errorf("%s missing: always reported", name)
				}
			}
		})
	}
}

func countState(ms []mesh.Member, state string) int {
	n := 0
	for _, m := range ms {
		if m.State == state {
			n++
		}
	}
	return n
}

// TestLint runs promtool's checks (names, units, _total on counters, HELP) on what the
// collector reports, and on the whole scrape, standard collectors included.
func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(newCollector(fullSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("collector: %s: %s", p.Metric, p.Text)
	}

	resp, err := http.Get(serve(t, fullSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err = promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "rhizome_") {
			t.Errorf("scrape: %s: %s", p.Metric, p.Text)
		}
	}

	// promlint does not insist on the prefix or on snake case; the package does.
	name := regexp.MustCompile(`^rhizome_[a-z][a-z0-9_]*[a-z0-9]$`)
	ch := make(chan *prometheus.Desc)
	go func() { newCollector(fullSnapshot).Describe(ch); close(ch) }()
	n := 0
	for d := range ch {
		n++
		s := d.String()
		fq := s[strings.Index(s, `fqName: "`)+len(`fqName: "`):]
		fq = fq[:strings.Index(fq, `"`)]
		if !name.MatchString(fq) {
			t.Errorf("metric name %q: want rhizome_ and snake case", fq)
		}
	}
	if n == 0 {
		t.Fatal("Describe sent nothing")
	}
}

// TestTwoHandlers checks that handlers share nothing: each has its own registry, reports
// its own node, and none registers in Prometheus' global registry.
func TestTwoHandlers(t *testing.T) {
	a, b := fullSnapshot(), fullSnapshot()
	b.Node, b.Traffic.Requests = "edge-2", 7
	urlA, urlB := serve(t, func() Snapshot { return a }), serve(t, func() Snapshot { return b })

	for _, tt := range []struct {
		url, node string
		requests  float64
	}{{urlA, "edge-1", 1000}, {urlB, "edge-2", 7}, {urlA, "edge-1", 1000}} {
		fams := scrape(t, tt.url)
		if got, _ := value(fams, "rhizome_requests_total"); got != tt.requests {
			t.Errorf("%s: requests = %v, want %v", tt.node, got, tt.requests)
		}
		if n := len(fams["rhizome_build_info"].GetMetric()); n != 1 {
			t.Errorf("%s: %d build_info series, want 1", tt.node, n)
		}
		if _, ok := value(fams, "rhizome_build_info", "node="+tt.node, "provider=hetzner", "region=eu-west", "version=v1.2.3"); !ok {
			t.Errorf("%s: build_info does not name it", tt.node)
		}
	}

	global, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range global {
		if strings.HasPrefix(f.GetName(), "rhizome_") {
			t.Errorf("%s in the global registry", f.GetName())
		}
	}
}

// TestReadOncePerScrape checks the contract Handler documents, under concurrent scrapes.
func TestReadOncePerScrape(t *testing.T) {
	var mu sync.Mutex
	reads := 0
	url := serve(t, func() Snapshot {
		mu.Lock()
		reads++
		mu.Unlock()
		return fullSnapshot()
	})
	const scrapes = 3 // under maxScrapesInFlight, so none is turned away
	var wg sync.WaitGroup
	for range scrapes {
		wg.Go(func() {
			if _, err := fetch(url); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if reads != scrapes {
		t.Errorf("%d reads for %d scrapes", reads, scrapes)
	}
}

// TestBadInput checks that a panic in read or a label value Prometheus refuses fails only
// the series concerned: the scrape still answers, with the rest.
func TestBadInput(t *testing.T) {
	t.Run("panic in read", func(t *testing.T) {
		fams := scrape(t, serve(t, func() Snapshot { panic("boom") }))
		if fams["rhizome_requests_total"] != nil {
			t.Error("rhizome series after a failed read")
		}
		if fams["go_goroutines"] == nil {
			t.Error("go_goroutines missing: the failed read took the standard metrics with it")
		}
	})
	t.Run("label not UTF-8", func(t *testing.T) {
		s := fullSnapshot()
		s.Bots["bad\xff"] = bots.ClassCounts{Seen: 1}
		fams := scrape(t, serve(t, func() Snapshot { return s }))
		if v, ok := value(fams, "rhizome_bot_requests_total", "class=search"); !ok || v != 50 {
			t.Errorf("search bots = %v, %v; want 50", v, ok)
		}
		if v, _ := value(fams, "rhizome_requests_total"); v != 1000 {
			t.Errorf("requests = %v, want 1000", v)
		}
	})
}
