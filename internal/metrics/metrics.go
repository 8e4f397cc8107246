package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// Snapshot is everything a scrape reports, read at scrape time. It is a plain value: the
// function that builds it owns it, and the collector only reads it.
type Snapshot struct {
	// Node, Region, Provider and Version label rhizome_build_info; empty is allowed.
	Node, Region, Provider, Version string

	// Traffic is the proxy handler's counters.
	Traffic proxy.Health
	// Cache is the object store's figures; nil when caching is off (no cache series).
	Cache *cache.Stats
	// Upstreams is every site's pools and origins, as upstream.Registry.Status returns them.
	Upstreams []upstream.GroupStatus
	// Stages is each request stage's counters by stage name (stages.Driver.Stats).
	Stages map[string]stages.Counters
	// RateLimit is the rate limiter's figures.
	RateLimit ratelimit.Stats
	// WAF is the WAF stage's counters.
	WAF waf.Stats
	// Bots is the bot stage's counts by class (crawler categories, automated, human,
	// spoofed).
	Bots map[string]bots.ClassCounts
	// DNS is the authoritative DNS server's counters; nil without DNS (no DNS series).
	DNS *dns.Stats
	// Members is the mesh as this node sees it; only their states are reported.
	Members []mesh.Member
	// Bundle is the node's bundle and rollout state.
	Bundle Bundle
}

// Bundle is the node's bundle and rollout state.
type Bundle struct {
	// ActiveSerial is the serial of the bundle being served; 0: none.
	ActiveSerial uint64
	// Activated is when the active bundle was swapped in; zero: none (no timestamp series).
	Activated time.Time
	// PendingSerial is a bundle held back until its rollout wave; 0: none.
	PendingSerial uint64
	// PendingWave is the wave PendingSerial waits for.
	PendingWave int
	// Healthy is this node's verdict on its active bundle.
	Healthy bool
	// Refused counts bundles refused since start.
	Refused uint64
	// KillSwitches is how many kill switches are on.
	KillSwitches int
	// Draining is true while the operator has the node drained (out of DNS answers).
	Draining bool
}

// maxScrapesInFlight bounds concurrent scrapes of one node. Each reads every subsystem's
// stats, some under a lock (the rate limiter's shards, the upstream registry), so a flood
// of scrapes on the admin address must not turn into lock contention with the request
// path. Two Prometheus servers (an HA pair) plus a curl leave room under it; beyond it the
// scrape gets 503.
const maxScrapesInFlight = 4

// Handler serves the scrape. read is called once per scrape, from the goroutine gathering
// the metrics; it must be safe to call concurrently with itself (scrapes may overlap) and
// should only read counters that already exist. Each Handler has a private registry, so
// any number of them can live in one process.
func Handler(read func() Snapshot) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(read),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// One bad series (a panic in read, a label value that is not UTF-8) must not
		// blank every other figure of the node: serve what was gathered and log the rest.
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slogPrinter{},
		MaxRequestsInFlight: maxScrapesInFlight,
	})
}

// slogPrinter sends promhttp's error log to slog's default logger, which the node sets up.
type slogPrinter struct{}

func (slogPrinter) Println(v ...any) {
	slog.Warn("metrics: scrape: " + fmt.Sprint(v...))
}
