// Package mesh is rhizome's control-path membership and gossip layer: it forms a
// peer-to-peer mesh with no centre, detects failed peers, and carries small
// announcements ("bundle serial N with hash H is available at URL U") between
// nodes.
//
// It is the only package in rhizome that imports hashicorp/memberlist; everything
// else talks to the mesh through [Start], [Mesh], [Delegate] and the small value
// types [Meta], [Announcement] and [Member].
//
// Two paths carry announcements, because memberlist broadcasts are best effort:
//
//   - Gossip: [Mesh.Announce] queues a broadcast that memberlist piggybacks on its
//     UDP gossip (packets of about 1.4 KB shared with membership traffic). A node
//     that hears an announcement newer than any it has relayed for the same
//     announcer re-queues it, so announcements spread epidemically.
//   - Anti-entropy: in every TCP push/pull exchange (and on join) each node sends
//     its [Delegate.Digest], the announcement for the bundle it runs, so a node
//     that was away or missed the gossip still learns what its peers run.
//
// Every message starts with a one-byte [MsgType] (an append-only enum) so that
// later kinds (kill switches, purges, health reports) can be added; nodes drop
// kinds they do not know.
//
// What this package must not do: fetch or verify bundle bodies, check
// signatures, or decide whether an announcement is worth acting on. It reports
// what it hears to the [Delegate]; the node decides. Bodies travel over HTTP
// elsewhere.
//
// Logging goes to log/slog. memberlist's own log lines are adapted to slog at
// Debug level, except its "[WARN]" and "[ERR]" lines which go to Warn.
package mesh
