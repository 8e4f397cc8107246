// Package dns is rhizome's authoritative nameserver: every node answers for the operator's
// zones (from the signed config bundle) so that "proxied" names resolve to healthy CDN
// nodes, chosen per query by a Steerer that the mesh layer supplies.
//
// The package has four parts:
//
//   - zone.go: ZoneSpec and friends, and Compile, which checks the zones as an operator
//     wrote them (errors name YAML paths under "dns:") and builds an immutable lookup table.
//   - answer.go: Answer, the pure core that turns one query into one response (RFC 1034,
//     1035, 2308, 4592, 6891, 7871, 8482). It does no I/O and is table-tested.
//   - server.go and ratelimit.go: Server, which serves Answer over UDP and TCP on one
//     address, swaps zones atomically, limits the response rate per client prefix against
//     amplification and counts what it did.
//   - dnssec.go: online DNSSEC signing of zones with a key (DNSSECSpec): RRSIGs made at
//     answer time for queries with the DO bit, compact denial of existence (RFC 9824).
//
// What it must not do: recurse or forward (a name outside the served zones is REFUSED),
// delegate (NS records below an apex are refused at Compile), transfer zones (AXFR and
// IXFR are REFUSED), or panic on any packet. Apart from Answer, which exists for tests and
// takes miekg/dns messages, callers never see the miekg/dns types.
package dns
