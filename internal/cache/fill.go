package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

type fillState int

const (
	fillWriting    fillState = iota
	fillCommitting           // Commit is storing; followers still wait for the end
	fillCommitted            // body complete: followers read to io.EOF
	fillAborted              // body truncated: followers get endErr after the bytes written
	fillFailed               // memory-only fill too large: bytes dropped, followers get endErr now
)

const (
	// Memory-mode buffers grow in chunks from minChunk to maxChunk so a tiny body costs a
	// few KiB and a large one does not reallocate and copy as it grows.
	minChunk = 4 << 10
	maxChunk = 256 << 10
)

// Fill is an object being written by one writer while any number of followers read it as
// it grows (request collapsing: concurrent misses for one key make one origin request
// whose body is streamed to every waiter as it arrives). With a Dir the buffer is a temp
// file in Dir/tmp, so a 1 GiB body streams with bounded RSS; memory-only it is a list of
// chunks.
//
// Write, Commit and Abort belong to the one writer and must not be called concurrently
// with each other; NewReader, Written and the readers are safe from any goroutine. The
// writer must end every fill with Commit or Abort (except after Write returned
// ErrTooLarge, which ends it), or its followers wait until the store is closed.
type Fill struct {
	s        *Store
	meta     *Meta
	id       uint64
	maxStore int64       // body length past which the fill is not storable
	purged   atomic.Bool // a purge matched it while it was being written

	// Disk mode. The file and its offsets are fixed after Begin; the writer appends with
	// Write while followers ReadAt below written, so neither waits on the other's I/O.
	file    *os.File
	tmpPath string
	bodyOff int64

	// Memory mode, writer-only: the last chunk and where it starts and ends. The writer
	// keeps its own reference so it never reads f.chunks, which Close may clear.
	tail               []byte
	tailStart, tailEnd int64

	mu       sync.Mutex
	cond     sync.Cond // signalled when written, state or a reader's closed changes
	state    fillState
	endErr   error
	written  int64
	tooLarge bool     // written passed maxStore (disk mode keeps going)
	chunks   [][]byte // memory mode; each chunk full length, valid up to written
	// refs counts the writer (until it is done) and open readers; the buffer is released
	// when it reaches zero.
	refs       int
	writerDone bool
	stored     bool    // the temp file became the object file
	obj        *Object // the committed object, for readers created after the buffer is gone
}

// newFill prepares the buffer for meta; with a Dir the header is written first, with a
// zero body length that Commit fills in.
func (s *Store) newFill(m *Meta) (*Fill, error) {
	mb := appendMeta(nil, m)
	if len(mb) > maxMetaLen {
		return nil, fmt.Errorf("meta is %d bytes, limit %d", len(mb), maxMetaLen)
	}
	// Memory-only, MaxObjectBytes is already clamped to MaxMemoryObject: a body the only
	// tier cannot hold is not worth buffering.
	f := &Fill{s: s, meta: m, id: s.nextID.Add(1), refs: 1, maxStore: s.cfg.MaxObjectBytes}
	f.cond.L = &f.mu
	if !s.disk {
		return f, nil
	}
	file, err := os.CreateTemp(s.tmpDir, "fill-*")
	if err != nil {
		return nil, err
	}
	hdr := encodeHeader(f.id, 0, mb)
	if _, err := file.Write(hdr); err != nil {
		file.Close()
		os.Remove(file.Name())
		return nil, err
	}
	f.file, f.tmpPath, f.bodyOff = file, file.Name(), int64(len(hdr))
	return f, nil
}

// Write appends p to the body and wakes followers. It never blocks on followers. Past
// MaxObjectBytes the fill becomes not storable: with a Dir it keeps buffering so
// followers still get the whole body (Commit then returns ErrTooLarge); memory-only it
// fails followers with ErrTooLarge and returns ErrTooLarge, which ends the fill. After
// any other error (a full disk) the body is incomplete: the writer should Abort.
func (f *Fill) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.state != fillWriting {
		err := f.doneErrLocked()
		f.mu.Unlock()
		return 0, err
	}
	w := f.written
	f.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if f.file == nil {
		if w+int64(len(p)) > f.maxStore {
			f.end(fillFailed, fmt.Errorf("cache: fill %q: body exceeds %d bytes: %w", shortKey(f.meta.Key), f.maxStore, ErrTooLarge))
			return 0, f.endErr
		}
		f.writeChunks(w, p)
		f.grow(int64(len(p)))
		return len(p), nil
	}
	n, err := f.file.Write(p)
	f.grow(int64(n))
	if err != nil {
		return n, fmt.Errorf("cache: fill %q: write temp file: %w", shortKey(f.meta.Key), err)
	}
	return n, nil
}

// writeChunks copies p into the memory buffer at w, the writer's position. Only new
// chunks need the lock (readers load f.chunks); bytes past written are never read, so
// filling them needs none.
func (f *Fill) writeChunks(w int64, p []byte) {
	for len(p) > 0 {
		if w == f.tailEnd {
			size := int64(minChunk)
			if len(f.chunks) > 0 {
				size = min(2*(f.tailEnd-f.tailStart), maxChunk)
			}
			c := make([]byte, size)
			f.mu.Lock()
			f.chunks = append(f.chunks, c)
			f.mu.Unlock()
			f.tail, f.tailStart, f.tailEnd = c, f.tailEnd, f.tailEnd+size
		}
		n := copy(f.tail[w-f.tailStart:], p)
		p = p[n:]
		w += int64(n)
	}
}

// grow publishes n more body bytes to followers.
func (f *Fill) grow(n int64) {
	f.mu.Lock()
	if f.state != fillWriting {
		f.mu.Unlock() // ended meanwhile (Close): followers already have their end
		return
	}
	f.written += n
	if f.written > f.maxStore {
		f.tooLarge = true
	}
	f.mu.Unlock()
	f.cond.Broadcast()
}

// Purged reports whether a purge matched the fill while it was written: it will not be
// stored, and new requests should not be served from it.
func (f *Fill) Purged() bool { return f.purged.Load() }

// Written returns the number of body bytes written so far.
func (f *Fill) Written() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written
}

// Storable reports whether the body so far is small enough to be stored at Commit.
func (f *Fill) Storable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.tooLarge && f.state != fillFailed
}

// Commit marks the body complete, stores it (in both tiers as bounds allow) and lets
// followers read to io.EOF. It returns an error wrapping ErrTooLarge when the body was
// not storable; with a Dir followers still get their full body.
func (f *Fill) Commit() error {
	f.mu.Lock()
	if f.state != fillWriting {
		err := f.doneErrLocked()
		f.mu.Unlock()
		return err
	}
	f.state = fillCommitting
	size, tooLarge := f.written, f.tooLarge
	f.mu.Unlock()
	// Still in s.fills until stored or refused, so that a purge cannot slip in between.
	defer f.s.fillDone(f)

	var (
		obj *Object
		err error
	)
	// With a Dir the header counts against DiskBytes too, and an object bigger than the
	// whole tier would evict everything and then itself.
	if tooLarge || (f.file != nil && f.bodyOff+size > f.s.cfg.DiskBytes) {
		err = fmt.Errorf("cache: commit %q: body of %d bytes exceeds %d: %w", shortKey(f.meta.Key), size, f.maxStore, ErrTooLarge)
	} else {
		obj, err = f.persist(size)
	}
	f.mu.Lock()
	f.state = fillCommitted
	f.obj = obj
	f.stored = obj != nil && f.file != nil
	f.mu.Unlock()
	f.cond.Broadcast()
	f.releaseWriter()
	return err
}

// persist stores the complete body of size bytes as the object for the fill's key.
func (f *Fill) persist(size int64) (*Object, error) {
	f.meta.Size = size
	if f.file == nil {
		body := make([]byte, 0, size)
		f.mu.Lock()
		chunks := f.chunks
		f.mu.Unlock()
		for _, c := range chunks {
			body = append(body, c[:min(int64(len(c)), size-int64(len(body)))]...)
		}
		return f.s.store(f.meta, f.id, body, "", 0, &f.purged)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(size))
	if _, err := f.file.WriteAt(b[:], bodySizeOff); err != nil {
		return nil, fmt.Errorf("cache: commit %q: %w", shortKey(f.meta.Key), err)
	}
	var body []byte
	if size <= f.s.cfg.MaxMemoryObject {
		// Read back from the page cache rather than keep a second copy while filling.
		body = make([]byte, size)
		if _, err := f.file.ReadAt(body, f.bodyOff); err != nil && !(size == 0 && errors.Is(err, io.EOF)) {
			return nil, fmt.Errorf("cache: commit %q: read back: %w", shortKey(f.meta.Key), err)
		}
	}
	return f.s.store(f.meta, f.id, body, f.tmpPath, f.bodyOff+size, &f.purged)
}

// Abort ends a fill whose body is incomplete (truncated origin): nothing is stored and
// followers get an error wrapping ErrAborted after the bytes already written. Abort after
// Commit or Abort does nothing.
func (f *Fill) Abort() {
	if f.end(fillAborted, fmt.Errorf("cache: fill %q: %w", shortKey(f.meta.Key), ErrAborted)) {
		f.s.fillDone(f)
	}
}

// kill aborts the fill on the store's behalf (Close).
func (f *Fill) kill(cause error) {
	f.end(fillAborted, fmt.Errorf("cache: fill %q: %w: %w", shortKey(f.meta.Key), ErrAborted, cause))
}

// end moves a fill still being written to a final state and reports whether it did.
func (f *Fill) end(st fillState, err error) bool {
	f.mu.Lock()
	if f.state != fillWriting {
		f.mu.Unlock()
		return false
	}
	f.state, f.endErr = st, err
	if st == fillFailed {
		f.chunks = nil // followers get the error now, so the bytes are garbage
	}
	f.mu.Unlock()
	f.cond.Broadcast()
	f.releaseWriter()
	return true
}

// doneErrLocked is what the writer gets for using a fill that already ended.
func (f *Fill) doneErrLocked() error {
	switch f.state {
	case fillAborted, fillFailed:
		return f.endErr
	default:
		return fmt.Errorf("cache: fill %q: already committed", shortKey(f.meta.Key))
	}
}

// releaseWriter drops the writer's reference; the temp file is unlinked now (open readers
// keep reading it) unless Commit renamed it into place.
func (f *Fill) releaseWriter() {
	f.mu.Lock()
	if f.writerDone {
		f.mu.Unlock()
		return
	}
	f.writerDone = true
	stored := f.stored
	f.mu.Unlock()
	if f.file != nil && !stored {
		if err := os.Remove(f.tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.s.log.Error("remove fill temp file", "path", f.tmpPath, "err", err)
		}
	}
	f.unref()
}

func (f *Fill) unref() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	if last {
		f.chunks = nil
	}
	f.mu.Unlock()
	if last && f.file != nil {
		f.file.Close()
	}
}

// NewReader returns a reader that follows the fill from byte 0. Read blocks until more
// data, Commit or Abort; after Commit it reads to io.EOF, after Abort it returns an error
// wrapping ErrAborted once the written bytes are read. Close releases it; the buffer is
// freed when the writer is done and every reader is closed. A reader created after that
// reads the committed object if it was stored, and otherwise only returns the fill's
// error.
func (f *Fill) NewReader() io.ReadCloser {
	f.mu.Lock()
	if f.refs == 0 {
		obj, st, endErr := f.obj, f.state, f.endErr
		f.mu.Unlock()
		switch {
		case obj != nil:
			b, err := obj.Open()
			if err != nil {
				return errReader{err}
			}
			return b
		case st == fillCommitted:
			return errReader{fmt.Errorf("cache: fill %q: body was not stored and is gone: %w", shortKey(f.meta.Key), ErrTooLarge)}
		default:
			return errReader{endErr}
		}
	}
	f.refs++
	f.mu.Unlock()
	return &fillReader{f: f}
}

// fillReader follows a Fill. It is meant for one goroutine, except that Close may be
// called from another to unblock a waiting Read.
type fillReader struct {
	f      *Fill
	pos    int64
	ci     int   // memory mode: current chunk
	co     int64 // memory mode: offset in it
	closed bool  // guarded by f.mu
}

var errReaderClosed = errors.New("cache: read from closed fill reader")

func (r *fillReader) Read(p []byte) (int, error) {
	f := r.f
	f.mu.Lock()
	for !r.closed && r.pos >= f.written && (f.state == fillWriting || f.state == fillCommitting) {
		f.cond.Wait()
	}
	switch {
	case r.closed:
		f.mu.Unlock()
		return 0, errReaderClosed
	case f.state == fillFailed:
		f.mu.Unlock()
		return 0, f.endErr
	case r.pos >= f.written:
		err := f.endErr
		f.mu.Unlock()
		if err == nil {
			return 0, io.EOF
		}
		return 0, err
	}
	avail := f.written - r.pos
	if len(p) == 0 {
		f.mu.Unlock()
		return 0, nil
	}
	if f.file != nil {
		f.mu.Unlock()
		n, err := f.file.ReadAt(p[:min(int64(len(p)), avail)], f.bodyOff+r.pos)
		r.pos += int64(n)
		if n > 0 {
			return n, nil // published bytes are in the file; a short read is retried
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("cache: follow fill %q: %w", shortKey(f.meta.Key), err)
	}
	c := f.chunks[r.ci]
	f.mu.Unlock()
	if r.co == int64(len(c)) {
		r.ci, r.co = r.ci+1, 0
		f.mu.Lock()
		c = f.chunks[r.ci]
		f.mu.Unlock()
	}
	n := copy(p, c[r.co:min(int64(len(c)), r.co+avail)])
	r.co += int64(n)
	r.pos += int64(n)
	return n, nil
}

func (r *fillReader) Close() error {
	f := r.f
	f.mu.Lock()
	if r.closed {
		f.mu.Unlock()
		return nil
	}
	r.closed = true
	f.mu.Unlock()
	f.cond.Broadcast() // wake this reader if it waits in another goroutine
	f.unref()
	return nil
}

// errReader is a reader that only fails.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
func (errReader) Close() error               { return nil }
