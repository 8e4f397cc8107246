package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Meta describes a stored response. Treat it as immutable once handed to the store (the
// store and concurrent readers share it); UpdateMeta replaces it whole.
type Meta struct {
	// Key is the primary cache key, e.g. "http://example.com/a?b", optionally followed by
	// "\x00" and a secondary (Vary) key. It may hold any bytes and be several KiB long.
	Key          string
	Status       int
	Header       http.Header
	RequestTime  time.Time
	ResponseTime time.Time
	// Tags are purge tags (from Cache-Tag / Surrogate-Key), already split by the caller.
	Tags []string
	// Size is the body length; the store sets it at Commit and ignores what the caller put.
	Size int64
}

// clone copies the parts of m a caller could still mutate after handing it over, so the
// store's copy really is immutable whatever the caller does next.
func (m Meta) clone() *Meta {
	m.Header = m.Header.Clone()
	if m.Tags != nil {
		m.Tags = append([]string(nil), m.Tags...)
	}
	return &m
}

// Object is a committed, stored response. It is immutable and safe for concurrent use.
// An Object stays usable after the store removed it: a memory-resident one keeps its
// body; a disk-resident one fails Open with ErrNotFound.
type Object struct {
	e    *entry // index entry it was committed as; used to record accesses
	meta *Meta
	// body is the whole body when memory-resident; inMem distinguishes an empty resident
	// body from a disk-only object.
	body  []byte
	inMem bool
	path  string // object file, for disk-only objects
	id    uint64 // body identity, to refuse a file that was replaced meanwhile
	memo  atomic.Pointer[memo]
}

type memo struct{ v any }

// Memo returns what SetMemo attached to the object, or nil. The store never reads it: it lets
// a caller keep something derived from the immutable Meta (the proxy keeps the parsed
// freshness) with the object, so that it is computed once per object rather than per hit.
func (o *Object) Memo() any {
	if m := o.memo.Load(); m != nil {
		return m.v
	}
	return nil
}

// SetMemo attaches v to the object; safe for concurrent use (the last writer wins).
func (o *Object) SetMemo(v any) { o.memo.Store(&memo{v: v}) }

// Meta returns the object's metadata. Callers must not modify it.
func (o *Object) Meta() *Meta { return o.meta }

// Bytes returns the body when the object is memory-resident (nil otherwise). Callers must
// not modify it.
func (o *Object) Bytes() []byte {
	if !o.inMem {
		return nil
	}
	return o.body
}

// Size returns the body length.
func (o *Object) Size() int64 { return o.meta.Size }

// Open returns a reader over the body, from memory or disk. It must be closed. It is safe
// to call concurrently. A disk body that was opened before the object was evicted or
// purged still reads fully (the file is unlinked, not truncated); Open after removal
// returns an error wrapping ErrNotFound.
func (o *Object) Open() (Body, error) {
	if o.inMem {
		return memBody{bytes.NewReader(o.body)}, nil
	}
	return openBody(o.path, o.id, o.meta.Key)
}

// Body is a stored body with sequential and random access (for Range answers).
type Body interface {
	io.Reader
	io.ReaderAt
	io.Closer
	// Size returns the body length.
	Size() int64
}

// memBody serves a memory-resident body; bytes.Reader already has Read, ReadAt and Size.
type memBody struct{ *bytes.Reader }

func (memBody) Close() error { return nil }

// fileBody serves a body from an open object file.
type fileBody struct {
	*io.SectionReader
	f *os.File
}

func (b *fileBody) Close() error { return b.f.Close() }

// openBody opens an object file and checks it still holds the body with the given id.
func openBody(path string, id uint64, key string) (*fileBody, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cache: open %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: open %q: %w", key, err)
	}
	p, err := readPreambleAt(f)
	if err != nil || p.id != id {
		// A different id means the key was replaced (a new commit renamed over the file):
		// the body this Object describes is gone.
		f.Close()
		if err != nil && !errors.Is(err, errCorrupt) {
			return nil, fmt.Errorf("cache: open %q: %w", key, err)
		}
		return nil, fmt.Errorf("cache: open %q: body replaced or removed: %w", key, ErrNotFound)
	}
	return &fileBody{SectionReader: io.NewSectionReader(f, p.bodyOff(), p.bodySize), f: f}, nil
}

func readPreambleAt(f *os.File) (preamble, error) {
	var b [preambleLen]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return preamble{}, fmt.Errorf("%w: short preamble", errCorrupt)
		}
		return preamble{}, err
	}
	return decodePreamble(b[:])
}
