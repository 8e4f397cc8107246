// Package cachepolicy is the cache policy of rhizome's edge: the judgements an RFC 9111
// shared cache makes about HTTP messages. Which responses may be stored (Storable), how long
// they stay fresh (Lifetime, CurrentAge), whether a stored response may be served, must be
// revalidated or may be served stale (Decide, StaleIfErrorOK), how requests map to cache keys
// (CacheKey, VaryKey), how conditional and range requests are answered from a stored object
// (NotModified, ParseRange), how a 304 updates it (Validators, Merge304) and what an unsafe
// request invalidates (InvalidationTargets).
//
// It must stay pure: no I/O, no goroutines, no clock (callers pass now), no package state
// that changes, no imports from rhizome. Every function is safe for concurrent use, never
// modifies the headers or URLs it is given and never panics, whatever the input. Storage,
// networking and configuration belong to the callers (internal/proxy, internal/cache).
//
// Where the RFCs leave a choice, this package takes the one that cannot serve what the origin
// did not allow, and says so in the doc comment of the function concerned. The main ones:
//
//   - A duplicated max-age or s-maxage with differing values, or one with an invalid value,
//     makes the response stale (lifetime 0), as RFC 9111 §4.2.1 allows; an invalid
//     stale-while-revalidate or stale-if-error is ignored, duplicates keep the smaller window.
//   - no-cache="field" is treated like no-cache (always revalidate), and private="field" like
//     private (never stored): this cache cannot strip single fields from what it serves.
//   - s-maxage implies proxy-revalidate for a shared cache (§5.2.2.10), so a response with
//     s-maxage, must-revalidate, proxy-revalidate or no-cache is never served stale: not by
//     stale-while-revalidate, stale-if-error, max-stale, nor the operator's always-online
//     window. Origins that want stale serving at the edge send max-age (or
//     CDN-Cache-Control: max-age) with stale-while-revalidate.
//   - CDN-Cache-Control (RFC 9213), when present and well-formed, replaces Cache-Control and
//     Expires entirely for this cache.
//   - Set-Cookie responses are stored only with public or s-maxage, as most CDNs do.
package cachepolicy
