package cache

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/maypok86/otter/v2"
)

// Errors returned (wrapped) by the store. Match them with errors.Is.
var (
	// ErrNotFound: the key is not stored, or the body an Object described was removed.
	ErrNotFound = errors.New("cache: not found")
	// ErrTooLarge: the body is larger than the store accepts (MaxObjectBytes), so it is
	// not stored.
	ErrTooLarge = errors.New("cache: object too large")
	// ErrAborted: the fill ended before its body was complete. It wraps
	// io.ErrUnexpectedEOF, so a follower that checks for a truncated body sees one.
	ErrAborted = fmt.Errorf("cache: fill aborted: %w", io.ErrUnexpectedEOF)
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("cache: store closed")
	// ErrPurged: a purge or delete ran while the fill was being written, so what it holds
	// may be exactly what the operator wanted gone; it is not stored (followers still get
	// their body).
	ErrPurged = errors.New("cache: purged while filling")
)

const (
	defaultMemoryBytes = 256 << 20
	defaultDiskBytes   = 1 << 30
	// maxMemoryObjectCap bounds the default MaxMemoryObject: a few large bodies would
	// otherwise push out thousands of small hot ones.
	maxMemoryObjectCap = 8 << 20
	// memOverhead estimates per-object memory beyond body, key and header bytes (Object,
	// Meta, entry, map slots), so that many tiny objects still count against the bound.
	memOverhead = 256
)

// Config configures a Store. The zero value is a memory-only store with default bounds.
type Config struct {
	// Dir is the data dir for the disk tier; "" means memory only (nothing survives a
	// restart). The store owns Dir/objects and Dir/tmp and deletes anything there it does
	// not recognise.
	Dir string
	// MemoryBytes bounds the memory tier (bodies + keys + header estimate), in bytes.
	// Default 256 MiB.
	MemoryBytes int64
	// DiskBytes bounds the disk tier (file sizes, headers included), in bytes. Default
	// 1 GiB. Ignored when Dir == "". Bodies of fills in progress are not counted.
	DiskBytes int64
	// MaxMemoryObject: larger bodies never enter the memory tier. Default
	// min(MemoryBytes/8, 8 MiB). In memory-only mode it also caps what is stored at all.
	MaxMemoryObject int64
	// MaxObjectBytes: larger bodies are never stored. Default DiskBytes/4
	// (memory-only: MemoryBytes/4, then clamped to MaxMemoryObject). Must not exceed
	// DiskBytes.
	MaxObjectBytes int64
	// Logger receives corrupt-file and I/O-failure reports. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills zero fields and checks the result; it does no I/O.
func (c Config) withDefaults() (Config, error) {
	if c.MemoryBytes < 0 || c.DiskBytes < 0 || c.MaxMemoryObject < 0 || c.MaxObjectBytes < 0 {
		return c, errors.New("cache: config: negative byte bound")
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = defaultMemoryBytes
	}
	if c.Dir == "" {
		c.DiskBytes = 0
	} else if c.DiskBytes == 0 {
		c.DiskBytes = defaultDiskBytes
	}
	if c.MaxMemoryObject == 0 {
		c.MaxMemoryObject = min(c.MemoryBytes/8, maxMemoryObjectCap)
	}
	if c.MaxObjectBytes == 0 {
		if c.Dir == "" {
			c.MaxObjectBytes = c.MemoryBytes / 4
		} else {
			c.MaxObjectBytes = c.DiskBytes / 4
		}
	}
	if c.Dir == "" {
		// Memory is the only tier, so nothing larger than it admits can be stored: clamp so
		// callers asking MaxObjectBytes up front get the limit that really applies.
		c.MaxObjectBytes = min(c.MaxObjectBytes, c.MaxMemoryObject)
	}
	if c.MaxMemoryObject > c.MemoryBytes {
		return c, fmt.Errorf("cache: config: MaxMemoryObject %d exceeds MemoryBytes %d", c.MaxMemoryObject, c.MemoryBytes)
	}
	// otter weights are uint32.
	if c.MaxMemoryObject > math.MaxUint32-maxMetaLen-memOverhead {
		return c, fmt.Errorf("cache: config: MaxMemoryObject %d exceeds 4 GiB", c.MaxMemoryObject)
	}
	if c.Dir != "" && c.MaxObjectBytes > c.DiskBytes {
		return c, fmt.Errorf("cache: config: MaxObjectBytes %d exceeds DiskBytes %d", c.MaxObjectBytes, c.DiskBytes)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// entry is the index record of one committed object, in whichever tiers it lives. With a
// Dir the index is exactly the disk tier; memory-only it is exactly the memory tier.
// Fields other than access are guarded by Store.mu.
type entry struct {
	key      string
	id       uint64
	name     string // file name (hex SHA-256 of key); "" memory-only
	bodySize int64
	fileSize int64 // disk bytes it accounts for, header included
	tags     []string
	// Disk LRU links, newest at Store.lruHead. stamp is the tick at which the entry was
	// queued; access is the tick of its latest hit (written without the lock, on memory
	// hits). Eviction requeues an entry whose access is newer than its stamp, so memory
	// hits keep a disk copy alive without taking the lock on the hot path.
	prev, next *entry
	stamp      int64
	access     atomic.Int64
}

// Store is a two-tier object store. All methods are safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	disk   bool // Dir != ""
	objDir string
	tmpDir string
	unlock func() // releases the data dir lock

	mem *otter.Cache[string, *Object]

	closed atomic.Bool
	nextID atomic.Uint64
	purges atomic.Uint64 // Delete and purge calls; written under mu
	tick   atomic.Int64  // logical clock for the disk LRU

	mu        sync.Mutex
	idx       map[string]*entry
	byURL     map[string][]*entry // primary key (before "\x00") -> all its variants
	byTag     map[string]map[*entry]struct{}
	lruHead   *entry
	lruTail   *entry
	diskBytes int64
	fills     map[*Fill]struct{} // unfinished fills, aborted by Close
	purgeLog  []purgeRecord      // the last purgeLogSize purges, oldest first

	hits, misses, evictions, memEvictions, purged atomic.Uint64
}

// Open opens the store. With a Dir it creates the directory layout, deletes leftover temp
// files and rebuilds the index from the object files there, deleting (and logging) any
// that are corrupt or partial.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "cache"),
		disk:   cfg.Dir != "",
		unlock: func() {},
		idx:    make(map[string]*entry),
		byURL:  make(map[string][]*entry),
		byTag:  make(map[string]map[*entry]struct{}),
		fills:  make(map[*Fill]struct{}),
	}
	s.nextID.Store(rand.Uint64())
	s.mem, err = otter.New(&otter.Options[string, *Object]{
		MaximumWeight: uint64(cfg.MemoryBytes),
		Weigher:       func(_ string, o *Object) uint32 { return memWeight(o) },
		OnDeletion:    s.onMemDeletion,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: memory tier: %w", err)
	}
	if s.disk {
		if err := s.openDisk(); err != nil {
			s.unlock()
			s.mem.StopAllGoroutines()
			return nil, err
		}
	}
	return s, nil
}

// memWeight is what an object costs the memory tier.
func memWeight(o *Object) uint32 {
	w := int64(len(o.body)) + int64(len(o.meta.Key)) + memOverhead
	for k, vs := range o.meta.Header {
		w += int64(len(k))
		for _, v := range vs {
			w += int64(len(v)) + 16
		}
	}
	for _, t := range o.meta.Tags {
		w += int64(len(t)) + 16
	}
	return uint32(min(w, math.MaxUint32))
}

// onMemDeletion runs on otter's executor after an entry left the memory tier.
func (s *Store) onMemDeletion(ev otter.DeletionEvent[string, *Object]) {
	if !ev.WasEvicted() {
		return // replaced or invalidated by us; the index was updated then
	}
	s.memEvictions.Add(1)
	if s.disk {
		return // the disk copy remains
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.idx[ev.Key]; e != nil && e == ev.Value.e {
		s.removeLocked(e)
		s.evictions.Add(1)
	}
}

// Get returns the object stored under key, looking in memory first, then on disk; a disk
// hit small enough for memory is promoted there. A memory hit does not allocate or lock.
func (s *Store) Get(key string) (*Object, bool) {
	if s.closed.Load() {
		return nil, false
	}
	if o, ok := s.mem.GetIfPresent(key); ok {
		if s.disk {
			// Record the access for the disk LRU; skip the store when unchanged so hot
			// keys do not bounce a cache line between cores.
			if t := s.tick.Load(); o.e.access.Load() != t {
				o.e.access.Store(t)
			}
		}
		s.hits.Add(1)
		return o, true
	}
	if s.disk {
		if o := s.getDisk(key); o != nil {
			s.hits.Add(1)
			return o, true
		}
	}
	s.misses.Add(1)
	return nil, false
}

// Begin starts writing a new object. It becomes visible to Get only after Commit; a
// committed object replaces any previous one with the same key. meta is copied (Header
// and Tags included); Meta.Size is ignored.
func (s *Store) Begin(meta Meta) (*Fill, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if meta.Key == "" {
		return nil, errors.New("cache: begin: empty key")
	}
	m := meta.clone()
	m.Size = 0
	f, err := s.newFill(m)
	if err != nil {
		return nil, fmt.Errorf("cache: begin %q: %w", shortKey(m.Key), err)
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		f.kill(ErrClosed)
		return nil, ErrClosed
	}
	s.fills[f] = struct{}{}
	s.mu.Unlock()
	return f, nil
}

// store makes a finished fill's body the object for its key. body is the whole body when
// it should enter the memory tier (nil otherwise); in disk mode tmpPath is the complete
// temp file, renamed into place.
func (s *Store) store(m *Meta, id uint64, body []byte, tmpPath string, fileSize int64, purged *atomic.Bool) (*Object, error) {
	e := &entry{key: m.Key, id: id, bodySize: m.Size, tags: m.Tags}
	var o *Object
	if body != nil || !s.disk {
		o = &Object{e: e, meta: m, body: body, inMem: true}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if purged.Load() {
		// The temp file goes when the last reader is done, as for any fill not stored.
		return nil, fmt.Errorf("cache: commit %q: %w", shortKey(m.Key), ErrPurged)
	}
	var diskObj *Object
	if s.disk {
		e.name = fileName(m.Key)
		e.fileSize = fileSize
		path := s.objPath(e.name)
		// Rename under the lock: the path is a function of the key, so a concurrent
		// remove of the previous version must not be able to unlink the new one.
		if err := os.Rename(tmpPath, path); err != nil {
			return nil, fmt.Errorf("cache: commit %q: %w", shortKey(m.Key), err)
		}
		if old := s.idx[m.Key]; old != nil {
			s.unindexLocked(old) // its file was just replaced by the rename
		}
		diskObj = &Object{e: e, meta: m, path: path, id: id}
	} else if old := s.idx[m.Key]; old != nil {
		s.unindexLocked(old)
	}
	s.indexLocked(e)
	if o != nil {
		s.mem.Set(m.Key, o)
	} else {
		s.mem.Invalidate(m.Key) // the previous version must not keep answering
		o = diskObj
	}
	if s.disk {
		s.evictDiskLocked(e)
	}
	return o, nil
}

// indexLocked adds e to the index (and disk LRU when on disk).
func (s *Store) indexLocked(e *entry) {
	s.idx[e.key] = e
	u := primaryKey(e.key)
	s.byURL[u] = append(s.byURL[u], e)
	s.retagLocked(e)
	if s.disk {
		s.diskBytes += e.fileSize
		s.pushFrontLocked(e)
	}
}

// unindexLocked drops e from every index without touching files or the memory tier.
func (s *Store) unindexLocked(e *entry) {
	if s.idx[e.key] != e {
		return
	}
	delete(s.idx, e.key)
	u := primaryKey(e.key)
	vs := s.byURL[u]
	for i, v := range vs {
		if v == e {
			vs[i] = vs[len(vs)-1]
			vs[len(vs)-1] = nil
			vs = vs[:len(vs)-1]
			break
		}
	}
	if len(vs) == 0 {
		delete(s.byURL, u)
	} else {
		s.byURL[u] = vs
	}
	s.untagLocked(e)
	if s.disk {
		s.diskBytes -= e.fileSize
		s.unlinkLRULocked(e)
	}
}

func (s *Store) untagLocked(e *entry) {
	for _, t := range e.tags {
		if set := s.byTag[t]; set != nil {
			delete(set, e)
			if len(set) == 0 {
				delete(s.byTag, t)
			}
		}
	}
}

// removeLocked removes e from both tiers.
func (s *Store) removeLocked(e *entry) {
	if s.idx[e.key] != e {
		return
	}
	s.unindexLocked(e)
	if s.disk {
		s.removeFile(s.objPath(e.name))
	}
	s.mem.Invalidate(e.key)
}

// Delete removes key from both tiers and reports whether it was stored.
func (s *Store) Delete(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeFillsLocked(func(k string, _ []string) bool { return k == key })
	e := s.idx[key]
	if e == nil || s.closed.Load() {
		return false
	}
	s.removeLocked(e)
	return true
}

// PurgeURL removes key u and every Vary variant of it (keys with prefix u+"\x00"). It
// returns how many objects were removed.
func (s *Store) PurgeURL(u string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeFillsLocked(func(k string, _ []string) bool { return k == u || strings.HasPrefix(k, u+"\x00") })
	var victims []*entry
	for _, e := range s.byURL[primaryKey(u)] {
		if e.key == u || strings.HasPrefix(e.key, u+"\x00") {
			victims = append(victims, e)
		}
	}
	return s.purgeLocked(victims)
}

// PurgePrefix removes every object whose key starts with p. It walks the whole index
// under the store lock (memory hits are not blocked).
func (s *Store) PurgePrefix(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeFillsLocked(func(k string, _ []string) bool { return strings.HasPrefix(k, p) })
	var victims []*entry
	for k, e := range s.idx {
		if strings.HasPrefix(k, p) {
			victims = append(victims, e)
		}
	}
	return s.purgeLocked(victims)
}

// PurgeTag removes every object whose Tags contain tag (case-sensitive).
func (s *Store) PurgeTag(tag string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeFillsLocked(func(_ string, tags []string) bool { return slices.Contains(tags, tag) })
	victims := make([]*entry, 0, len(s.byTag[tag]))
	for e := range s.byTag[tag] {
		victims = append(victims, e)
	}
	return s.purgeLocked(victims)
}

// Generation counts Delete and purge calls, so that callers sharing in-flight fills (the
// proxy's collapsing) can refuse to join, after a purge, a fetch that began before it.
func (s *Store) Generation() uint64 { return s.purges.Load() }

// purgeMatch says whether a purge covers an object with this key and these tags.
type purgeMatch func(key string, tags []string) bool

// purgeRecord is one purge kept in the recent-purge log.
type purgeRecord struct {
	gen   uint64
	match purgeMatch
}

// purgeLogSize bounds the recent-purge log. A fill begun as of a generation older than the
// log's oldest entry is refused, as if a purge had matched it: the cost is one extra miss.
const purgeLogSize = 256

// purgeFillsLocked records a purge: it marks the unfinished fills that match, so that they
// are not stored (ErrPurged), and logs it for fills whose fetch began before it but whose
// Begin comes after (BeginSince). Fills stay in s.fills until their commit has stored or
// refused them, so no purge falls in between.
func (s *Store) purgeFillsLocked(match purgeMatch) {
	gen := s.purges.Add(1)
	if len(s.purgeLog) == purgeLogSize {
		s.purgeLog = append(s.purgeLog[:0], s.purgeLog[1:]...)
	}
	s.purgeLog = append(s.purgeLog, purgeRecord{gen: gen, match: match})
	for f := range s.fills {
		if match(f.meta.Key, f.meta.Tags) {
			f.purged.Store(true)
		}
	}
}

// BeginSince is Begin for a body whose fetch started when the store's Generation was gen:
// a purge since then that covers the object marks the fill purged, so that content fetched
// before a purge is never stored after it.
func (s *Store) BeginSince(meta Meta, gen uint64) (*Fill, error) {
	f, err := s.Begin(meta)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.purges.Load() == gen {
		return f, nil
	}
	if len(s.purgeLog) == 0 || s.purgeLog[0].gen > gen+1 {
		f.purged.Store(true) // older than what the log remembers
		return f, nil
	}
	for _, rec := range s.purgeLog {
		if rec.gen > gen && rec.match(f.meta.Key, f.meta.Tags) {
			f.purged.Store(true)
			break
		}
	}
	return f, nil
}

func (s *Store) purgeLocked(victims []*entry) int {
	if s.closed.Load() {
		// The data dir lock is released: the files may belong to another store now.
		return 0
	}
	for _, e := range victims {
		s.removeLocked(e)
	}
	s.purged.Add(uint64(len(victims)))
	return len(victims)
}

// Stats is a snapshot of the store's size and counters.
type Stats struct {
	MemoryObjects int
	DiskObjects   int
	MemoryBytes   int64 // memory tier weight (bodies + keys + header estimate)
	DiskBytes     int64 // sum of object file sizes, headers included
	Hits          uint64
	Misses        uint64
	// Evictions counts objects that left the store to honour a bound (disk evictions with
	// a Dir, memory evictions memory-only). MemoryEvictions counts every memory-tier
	// eviction, including objects that stay on disk.
	Evictions       uint64
	MemoryEvictions uint64
	Purged          uint64 // objects removed by PurgeURL, PurgePrefix and PurgeTag
}

// Stats returns current sizes and counters. Memory figures are otter's estimates and may
// briefly exceed the bound while eviction catches up.
func (s *Store) Stats() Stats {
	st := Stats{
		MemoryObjects:   s.mem.EstimatedSize(),
		MemoryBytes:     int64(s.mem.WeightedSize()),
		Hits:            s.hits.Load(),
		Misses:          s.misses.Load(),
		Evictions:       s.evictions.Load(),
		MemoryEvictions: s.memEvictions.Load(),
		Purged:          s.purged.Load(),
	}
	if s.disk {
		s.mu.Lock()
		st.DiskObjects = len(s.idx)
		st.DiskBytes = s.diskBytes
		s.mu.Unlock()
	}
	return st
}

// Close stops background work and aborts unfinished fills (their followers get
// ErrAborted, their temp files are removed). Nothing needs flushing: committed objects
// are already on disk. Afterwards Get misses and nothing changes the data dir, which
// another Store may then open; Objects already handed out stay readable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	fills := s.fills
	s.fills = nil
	s.mu.Unlock()
	for f := range fills {
		f.kill(ErrClosed)
	}
	s.mem.StopAllGoroutines()
	s.unlock()
	return nil
}

// fillDone forgets a fill that no longer needs aborting at Close.
func (s *Store) fillDone(f *Fill) {
	s.mu.Lock()
	delete(s.fills, f)
	s.mu.Unlock()
}

// primaryKey is the URL part of a cache key, before the Vary separator.
func primaryKey(key string) string {
	if i := strings.IndexByte(key, 0); i >= 0 {
		return key[:i]
	}
	return key
}

// shortKey bounds a key for error messages and logs; keys can be several KiB.
func shortKey(k string) string {
	if len(k) > 200 {
		return k[:200] + "..."
	}
	return k
}
