// Package upstream decides which origin serves a request that the cache cannot answer, and
// keeps each origin's live health.
//
// A site's upstream is a Group: its origin pools in order (say "primary" on one provider,
// "fallback" on another). Group.Pick chooses the origin for the next attempt: the first pool
// with an available origin wins, and inside it power-of-two-choices on a latency and load
// score spreads the requests. An origin is available when its active health check says up
// (or it has none) and passive outlier detection has not ejected it. When nothing is
// available anywhere, Pick fails open ("panic mode"), because a health check can be wrong
// and a try beats a certain 502.
//
// One Registry per node owns the live state of every origin (latency EWMA, requests in
// flight, failures, ejections, active-check state), keyed by (site key, pool name, origin
// URL), and runs one health-check goroutine per checked origin. Building a Group again for
// the same site keeps the state of unchanged origins, so a config swap does not reset health.
// The proxy reports each attempt through Origin.Begin and Attempt.End; a Group's RetryBudget
// bounds how many retries the site may add on top of its traffic.
//
// What it must not do: Pick, Available, Begin, End and the RetryBudget methods run on every
// cache miss, so they never block on I/O, never wait for a health check and never take a
// lock wider than one origin's (or one budget's) small mutex; they do not allocate, except
// Begin's one Attempt (and End's log line when it ejects). Log lines caused by live
// traffic (ejection, re-admission) are handed to a background goroutine that may drop them
// rather than slow a request. The package does not decide whether a request may be retried
// (method, body, attempts): that is the proxy's call; it only says where the next attempt
// should go and whether the budget allows one. It imports nothing else of rhizome.
//
// Concurrency contract: Registry, Group, Pool, Origin, Attempt and RetryBudget are safe for
// concurrent use. A Group and its Pools and Origins are immutable views built by
// Registry.Group; their live state is shared atomics. Registry methods (Group, Retain,
// Status, Close) serialise on one registry mutex and are meant for config swaps and the
// admin API, never for the request path. Callers must not modify the slices and URLs this
// package returns.
package upstream
