// Package cache is the object store of a rhizome edge node: it stores response objects
// (metadata and body) in two tiers, each bounded in bytes, and streams, evicts and purges
// them.
//
// The memory tier is an otter W-TinyLFU cache weighted by bytes; it holds hot objects
// whose bodies are at most Config.MaxMemoryObject. The disk tier, present when Config.Dir
// is set, holds every committed object (write-through: disk is the durable copy and
// survives a restart) as one file per object under Dir/objects/xx/<sha256(key)>, evicted
// least recently used first by file bytes. A disk hit small enough for memory is promoted.
//
// Writers use Begin to get a Fill, which any number of followers can read while it grows
// (request collapsing). The buffer is a temp file in Dir/tmp, so a body of any size
// streams with bounded memory; Commit renames it into place without copying.
//
// # What it must not do
//
// It knows nothing of HTTP semantics: freshness, Vary matching, validators and what is
// cacheable belong to the caller; keys, statuses and headers are opaque to it. It never
// uses a key as a file name (keys hold any bytes and can be KiB long), never panics on a
// damaged data dir (invalid files are deleted and logged at Open), and never stores a
// body it did not see complete (Abort).
//
// # Why no database for the disk index
//
// The disk index (key -> file, size, recency, tags) lives only in memory and is rebuilt at
// Open by reading the header of every object file, in parallel. A persistent index such as
// bbolt would be a second source of truth that can disagree with the files after a crash
// and would itself need repair; object files are self-describing (magic, version, id,
// body length, checksummed meta with the full key) and appear atomically by rename, so
// the files alone are always a consistent state. The cost is an Open that reads one small
// header per object, which is cheap next to warming a cold cache from the origin.
//
// Durability is that of a cache: files are not fsynced, so a crash may lose recent
// objects; a file cut short is recognised by its length and deleted at Open.
//
// # Concurrency
//
// Store methods are safe for concurrent use. A memory hit takes no lock and allocates
// nothing. Index changes (commits, deletes, purges, disk evictions and the renames and
// unlinks they imply) are serialised by one mutex, because file paths are a function of
// the key and a rename must not race an unlink of the same path; purges by prefix walk
// the whole index under it. Objects are immutable and safe to share; Meta must be
// treated as read-only once handed to the store. A Fill has one writer and any number of
// readers; the writer never waits for them.
package cache
