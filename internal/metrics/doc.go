// Package metrics serves a node's figures at /metrics in the Prometheus text format:
// requests, cache, origins, stages, rate limit, WAF, bots, DNS, mesh and rollout, plus the
// standard Go runtime and process metrics.
//
// Every figure it reports already exists elsewhere as a counter or a piece of state. A
// scrape reads them all once, through the function given to [Handler], and turns them into
// constant metrics on the spot (a custom prometheus.Collector). Nothing here is touched by
// the request path, so metrics cost a request nothing; a scrape costs one read of each
// subsystem's stats.
//
// # What it must not do
//
// It must not keep state between scrapes or register anything in Prometheus' global
// registry: several nodes run in one process in tests and in the demo, and each Handler
// owns a private registry. It must not label a series with anything a client chooses (URL,
// IP, User-Agent, Host): label values come only from configuration (site, pool, origin URL,
// stage name, bot class) or from small fixed sets (status class, cache tier, member state),
// so the number of series is bounded by the configuration, not by traffic.
package metrics
