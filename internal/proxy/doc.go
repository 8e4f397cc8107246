// Package proxy is the HTTP data plane of a node: a caching reverse proxy that serves the
// sites of the current snapshot.
//
// One Handler serves every request. Its life reads top to bottom in ServeHTTP: find the site
// by Host, then either tunnel an upgrade, answer from the cache (fresh hit, stale while
// revalidating, revalidate, or one collapsed origin fetch per key whose body streams to every
// waiter), or pass the request to an origin. Freshness and every other RFC 9111 judgement is
// delegated to the pure package cachepolicy; bytes are kept by package cache.
//
// The handler reads an immutable *snapshot.Snapshot through an atomic pointer: Swap never
// blocks a request and a request never waits for whoever builds the next snapshot.
//
// Concurrency: a Handler is safe for concurrent use. Origin fetches that fill the cache run on
// a context detached from the client that started them, so one client hanging up never
// truncates what other waiters (or the cache) receive.
package proxy
