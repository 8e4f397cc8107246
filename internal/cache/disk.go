package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

const (
	objectsDirName = "objects"
	tmpDirName     = "tmp"
	lockFileName   = "LOCK"
)

// fileName is the object file name for key: keys hold any bytes and can be KiB long, so
// they never appear in paths.
func fileName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// objPath fans files out over 256 subdirs so no directory grows past a few thousand
// entries per million objects.
func (s *Store) objPath(name string) string {
	return filepath.Join(s.objDir, name[:2], name)
}

func (s *Store) removeFile(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("remove object file", "path", path, "err", err)
	}
}

// openDisk prepares Dir and rebuilds the index from the object files.
func (s *Store) openDisk() error {
	dir := s.cfg.Dir
	s.objDir = filepath.Join(dir, objectsDirName)
	s.tmpDir = filepath.Join(dir, tmpDirName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache: create data dir: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockFileName))
	if err != nil {
		return fmt.Errorf("cache: lock data dir %s: %w", dir, err)
	}
	s.unlock = unlock
	// Temp files belong to fills a previous process never finished: never valid objects.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("cache: clear temp dir: %w", err)
	}
	if err := os.MkdirAll(s.tmpDir, 0o755); err != nil {
		return fmt.Errorf("cache: create temp dir: %w", err)
	}
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(s.objDir, fmt.Sprintf("%02x", i)), 0o755); err != nil {
			return fmt.Errorf("cache: create objects dir: %w", err)
		}
	}
	found, err := s.scan()
	if err != nil {
		return err
	}
	// Oldest first, so the most recently written ends at the LRU head. Recency before a
	// restart is approximated by write time: hits do not touch files.
	slices.SortFunc(found, func(a, b scanned) int { return a.mtime.Compare(b.mtime) })
	for _, f := range found {
		s.indexLocked(f.e) // keys are unique: the file name is the key's hash
	}
	s.evictDiskLocked(nil) // the bound may have shrunk since the last run
	return nil
}

type scanned struct {
	e     *entry
	mtime time.Time
}

// scan reads every object header under objects/, in parallel over the fan-out dirs since
// a large disk tier holds millions of files. Anything invalid is deleted and logged.
func (s *Store) scan() ([]scanned, error) {
	top, err := os.ReadDir(s.objDir)
	if err != nil {
		return nil, fmt.Errorf("cache: scan %s: %w", s.objDir, err)
	}
	var (
		mu    sync.Mutex
		found []scanned
		wg    sync.WaitGroup
		dirs  = make(chan string)
	)
	for range min(runtime.GOMAXPROCS(0), 16) {
		wg.Go(func() {
			var local []scanned
			for d := range dirs {
				local = append(local, s.scanDir(d)...)
			}
			mu.Lock()
			found = append(found, local...)
			mu.Unlock()
		})
	}
	for _, de := range top {
		p := filepath.Join(s.objDir, de.Name())
		if !de.IsDir() || !isFanout(de.Name()) {
			s.log.Warn("removing unexpected entry in objects dir", "path", p)
			if err := os.RemoveAll(p); err != nil {
				s.log.Error("remove unexpected entry", "path", p, "err", err)
			}
			continue
		}
		dirs <- p
	}
	close(dirs)
	wg.Wait()
	return found, nil
}

func (s *Store) scanDir(dir string) []scanned {
	des, err := os.ReadDir(dir)
	if err != nil {
		s.log.Error("scan objects dir", "path", dir, "err", err)
		return nil
	}
	var out []scanned
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		e, mtime, err := s.loadEntry(p, de)
		if err != nil {
			s.log.Warn("removing invalid object file", "path", p, "err", err)
			if err := os.RemoveAll(p); err != nil {
				s.log.Error("remove invalid object file", "path", p, "err", err)
			}
			continue
		}
		out = append(out, scanned{e: e, mtime: mtime})
	}
	return out
}

// loadEntry validates one object file and returns its index entry.
func (s *Store) loadEntry(path string, de fs.DirEntry) (*entry, time.Time, error) {
	name := de.Name()
	if !de.Type().IsRegular() {
		return nil, time.Time{}, errors.New("not a regular file")
	}
	if !isObjectName(name) || name[:2] != filepath.Base(filepath.Dir(path)) {
		return nil, time.Time{}, errors.New("unexpected file name")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	p, m, err := readHeader(f, fi.Size())
	if err != nil {
		return nil, time.Time{}, err
	}
	if fileName(m.Key) != name {
		return nil, time.Time{}, errors.New("key does not match file name")
	}
	e := &entry{key: m.Key, id: p.id, name: name, bodySize: p.bodySize, fileSize: fi.Size(), tags: m.Tags}
	return e, fi.ModTime(), nil
}

func isFanout(n string) bool { return len(n) == 2 && isLowerHex(n) }

func isObjectName(n string) bool { return len(n) == 2*sha256.Size && isLowerHex(n) }

func isLowerHex(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// --- disk LRU (guarded by s.mu) ---

func (s *Store) pushFrontLocked(e *entry) {
	e.stamp = s.tick.Add(1)
	e.access.Store(e.stamp)
	e.prev = nil
	e.next = s.lruHead
	if s.lruHead != nil {
		s.lruHead.prev = e
	}
	s.lruHead = e
	if s.lruTail == nil {
		s.lruTail = e
	}
}

func (s *Store) unlinkLRULocked(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if s.lruHead == e {
		s.lruHead = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if s.lruTail == e {
		s.lruTail = e.prev
	}
	e.prev, e.next = nil, nil
}

// touchLocked marks e most recently used.
func (s *Store) touchLocked(e *entry) {
	s.unlinkLRULocked(e)
	s.pushFrontLocked(e)
}

// evictDiskLocked removes least recently used objects until the disk tier is within its
// bound. keep (the object just stored) is never evicted.
func (s *Store) evictDiskLocked(keep *entry) {
	for s.diskBytes > s.cfg.DiskBytes {
		e := s.lruTail
		if e == nil || e == keep {
			return
		}
		if e.access.Load() > e.stamp {
			// Hit since it was queued (maybe on the lock-free memory path): second chance.
			s.touchLocked(e)
			continue
		}
		s.removeLocked(e)
		s.evictions.Add(1)
	}
}

// getDisk looks key up in the disk tier and returns its object, promoted to memory when
// small enough, or nil.
func (s *Store) getDisk(key string) *Object {
	s.mu.Lock()
	e := s.idx[key]
	if e == nil {
		s.mu.Unlock()
		return nil
	}
	s.touchLocked(e)
	path := s.objPath(e.name)
	s.mu.Unlock()

	o, err := s.readObject(e, path)
	if err != nil {
		s.mu.Lock()
		if s.idx[key] == e {
			// The file is gone or damaged behind our back: the index must not keep
			// promising it.
			s.log.Warn("dropping unreadable object", "key", shortKey(key), "path", path, "err", err)
			s.removeLocked(e)
		}
		s.mu.Unlock()
		return nil
	}
	if o.inMem {
		s.mu.Lock()
		// Promote only if the key still maps to this body: a purge or a newer commit
		// while we read must not be undone.
		if s.idx[key] == e && !s.closed.Load() {
			s.mem.Set(key, o)
		}
		s.mu.Unlock()
	}
	return o
}

// readObject reads e's header, and its body when it fits the memory tier.
func (s *Store) readObject(e *entry, path string) (*Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	p, m, err := readHeader(f, fi.Size())
	if err != nil {
		return nil, err
	}
	if p.id != e.id || m.Key != e.key {
		return nil, fmt.Errorf("%w: id or key changed", errCorrupt)
	}
	o := &Object{e: e, meta: m, path: path, id: p.id}
	if p.bodySize <= s.cfg.MaxMemoryObject {
		body := make([]byte, p.bodySize)
		if _, err := f.ReadAt(body, p.bodyOff()); err != nil && !(errors.Is(err, io.EOF) && p.bodySize == 0) {
			return nil, err
		}
		o.body, o.inMem = body, true
	}
	return o, nil
}

// UpdateMeta replaces the metadata of the object stored under key and keeps its body
// (after a 304 revalidation). m.Key and m.Size are ignored. With a Dir the file is
// rewritten as a copy with the new header and renamed over the old one, so a crash leaves
// either version, never a mix. It returns an error wrapping ErrNotFound if key is absent
// or was replaced meanwhile.
func (s *Store) UpdateMeta(key string, m Meta) error {
	nm := m.clone()
	nm.Key = key
	if !s.disk {
		return s.updateMemory(key, nm)
	}
	s.mu.Lock()
	e := s.idx[key]
	if e == nil || s.closed.Load() {
		s.mu.Unlock()
		return fmt.Errorf("cache: update meta %q: %w", shortKey(key), ErrNotFound)
	}
	path := s.objPath(e.name)
	s.mu.Unlock()

	// Copy outside the lock: bodies can be hundreds of MiB.
	tmp, size, err := s.rewriteFile(path, e.id, nm)
	if err != nil {
		return fmt.Errorf("cache: update meta %q: %w", shortKey(key), err)
	}
	nm.Size = e.bodySize

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idx[key] != e || s.closed.Load() {
		os.Remove(tmp)
		return fmt.Errorf("cache: update meta %q: replaced meanwhile: %w", shortKey(key), ErrNotFound)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache: update meta %q: %w", shortKey(key), err)
	}
	s.untagLocked(e)
	e.tags = nm.Tags
	s.retagLocked(e)
	s.diskBytes += size - e.fileSize
	e.fileSize = size
	if old, ok := s.mem.GetEntryQuietly(key); ok && old.Value.e == e {
		s.mem.Set(key, &Object{e: e, meta: nm, body: old.Value.body, inMem: true})
	}
	s.touchLocked(e)
	s.evictDiskLocked(e)
	return nil
}

// rewriteFile writes a temp file holding meta and the body of the object file at path,
// which must still hold body id. It returns the temp path and its size.
func (s *Store) rewriteFile(path string, id uint64, meta *Meta) (string, int64, error) {
	src, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, ErrNotFound
	}
	if err != nil {
		return "", 0, err
	}
	defer src.Close()
	p, err := readPreambleAt(src)
	if err != nil {
		return "", 0, err
	}
	if p.id != id {
		return "", 0, fmt.Errorf("replaced meanwhile: %w", ErrNotFound)
	}
	mb := appendMeta(nil, meta)
	if len(mb) > maxMetaLen {
		return "", 0, fmt.Errorf("meta is %d bytes, limit %d", len(mb), maxMetaLen)
	}
	dst, err := os.CreateTemp(s.tmpDir, "meta-*")
	if err != nil {
		return "", 0, err
	}
	fail := func(err error) (string, int64, error) {
		dst.Close()
		os.Remove(dst.Name())
		return "", 0, err
	}
	hdr := encodeHeader(id, p.bodySize, mb)
	if _, err := dst.Write(hdr); err != nil {
		return fail(err)
	}
	if _, err := src.Seek(p.bodyOff(), io.SeekStart); err != nil {
		return fail(err)
	}
	// A LimitedReader over an *os.File lets io.Copy use copy_file_range (in-kernel,
	// reflink where the file system can).
	n, err := io.Copy(dst, io.LimitReader(src, p.bodySize))
	if err != nil {
		return fail(err)
	}
	if n != p.bodySize {
		return fail(fmt.Errorf("%w: body shorter than header says", errCorrupt))
	}
	if err := dst.Close(); err != nil {
		os.Remove(dst.Name())
		return "", 0, err
	}
	return dst.Name(), int64(len(hdr)) + p.bodySize, nil
}

func (s *Store) retagLocked(e *entry) {
	for _, t := range e.tags {
		set := s.byTag[t]
		if set == nil {
			set = make(map[*entry]struct{})
			s.byTag[t] = set
		}
		set[e] = struct{}{}
	}
}

// updateMemory is UpdateMeta for a memory-only store.
func (s *Store) updateMemory(key string, nm *Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.idx[key]
	old, ok := s.mem.GetEntryQuietly(key)
	if e == nil || !ok || old.Value.e != e || s.closed.Load() {
		return fmt.Errorf("cache: update meta %q: %w", shortKey(key), ErrNotFound)
	}
	nm.Size = e.bodySize
	s.untagLocked(e)
	e.tags = nm.Tags
	s.retagLocked(e)
	s.mem.Set(key, &Object{e: e, meta: nm, body: old.Value.body, inMem: true})
	return nil
}
