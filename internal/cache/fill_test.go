package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowWrite writes b in pieces of step bytes, yielding between them so followers really
// read a growing body.
func slowWrite(t testing.TB, f *Fill, b []byte, step int) {
	t.Helper()
	for i := 0; i < len(b); i += step {
		if _, err := f.Write(b[i:min(i+step, len(b))]); err != nil {
			t.Errorf("Write at %d: %v", i, err)
			return
		}
		if i%(8*step) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// follow reads r to its end and returns what it read and the final error (nil for EOF).
func follow(r io.ReadCloser) ([]byte, error) {
	defer r.Close()
	var buf bytes.Buffer
	p := make([]byte, 3000) // odd size so reads straddle chunk and write boundaries
	for {
		n, err := r.Read(p)
		buf.Write(p[:n])
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return buf.Bytes(), err
		}
	}
}

func TestFollowers(t *testing.T) {
	cfg := Config{MemoryBytes: 64 << 20, MaxMemoryObject: 4 << 20, DiskBytes: 64 << 20}
	modes(t, cfg, func(t *testing.T, s *Store, cfg Config) {
		const readers = 50
		m := testMeta("http://example.com/collapsed")
		want := body(1<<20+123, 42)
		f, err := s.Begin(m)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([][]byte, readers)
		errs := make([]error, readers)
		start := func(i int) {
			r := f.NewReader()
			wg.Go(func() { results[i], errs[i] = follow(r) })
		}
		for i := range readers / 2 { // before the first byte
			start(i)
		}
		slowWrite(t, f, want[:len(want)/2], 1000)
		for i := readers / 2; i < readers-1; i++ { // mid-body
			start(i)
		}
		slowWrite(t, f, want[len(want)/2:], 7000)
		if got := f.Written(); got != int64(len(want)) {
			t.Errorf("Written = %d, want %d", got, len(want))
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		start(readers - 1) // after Commit
		wg.Wait()
		for i := range readers {
			if errs[i] != nil || !bytes.Equal(results[i], want) {
				t.Errorf("reader %d: %d bytes, err %v; want %d bytes, EOF", i, len(results[i]), errs[i], len(want))
			}
		}
		mustGet(t, s, m, want)
		// Once the writer and every reader are done, the buffer is gone; a late reader
		// reads the stored object.
		late, err := follow(f.NewReader())
		if err != nil || !bytes.Equal(late, want) {
			t.Errorf("late reader: %d bytes, %v", len(late), err)
		}
		if cfg.Dir != "" {
			if tmp := tmpFiles(t, cfg.Dir); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		}
	})
}

func TestAbort(t *testing.T) {
	modes(t, Config{}, func(t *testing.T, s *Store, cfg Config) {
		m := testMeta("http://example.com/truncated")
		put(t, s, m, []byte("previous version"))
		partial := body(100<<10, 1)
		f, _ := s.Begin(m)
		early := f.NewReader()
		type res struct {
			b   []byte
			err error
		}
		done := make(chan res, 1)
		go func() { b, err := follow(early); done <- res{b, err} }()
		f.Write(partial)
		f.Abort()
		f.Abort() // idempotent
		if err := f.Commit(); !errors.Is(err, ErrAborted) {
			t.Errorf("Commit after Abort = %v, want ErrAborted", err)
		}
		if _, err := f.Write([]byte("x")); !errors.Is(err, ErrAborted) {
			t.Errorf("Write after Abort = %v, want ErrAborted", err)
		}
		r := <-done
		if !errors.Is(r.err, ErrAborted) || !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("follower error = %v, want ErrAborted and io.ErrUnexpectedEOF", r.err)
		}
		if !bytes.Equal(r.b, partial) {
			t.Errorf("follower read %d bytes before the error, want %d", len(r.b), len(partial))
		}
		// The previous version is untouched: an aborted fill stores nothing.
		mustGet(t, s, m, []byte("previous version"))
		if cfg.Dir != "" {
			if files, _ := diskUsage(t, cfg.Dir); files != 1 {
				t.Errorf("%d object files, want 1", files)
			}
			if tmp := tmpFiles(t, cfg.Dir); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		}
		// A reader created after the abort, once the buffer is released, gets the error.
		if _, err := follow(f.NewReader()); !errors.Is(err, ErrAborted) {
			t.Errorf("late reader error = %v, want ErrAborted", err)
		}
	})
}

func TestTooLarge(t *testing.T) {
	const limit = 64 << 10
	t.Run("disk: followers get the whole body, nothing stored", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, Config{Dir: dir, MaxObjectBytes: limit, DiskBytes: 1 << 20})
		m := testMeta("http://example.com/huge")
		want := body(3*limit, 1)
		f, _ := s.Begin(m)
		r := f.NewReader()
		done := make(chan []byte)
		go func() {
			b, err := follow(r)
			if err != nil {
				t.Errorf("follower: %v", err)
			}
			done <- b
		}()
		for i := 0; i < len(want); i += 10000 {
			if _, err := f.Write(want[i:min(i+10000, len(want))]); err != nil {
				t.Fatalf("Write past the limit: %v (disk mode keeps teeing)", err)
			}
		}
		if f.Storable() {
			t.Error("Storable after passing MaxObjectBytes")
		}
		if err := f.Commit(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Commit = %v, want ErrTooLarge", err)
		}
		if got := <-done; !bytes.Equal(got, want) {
			t.Errorf("follower got %d bytes, want %d", len(got), len(want))
		}
		if _, ok := s.Get(m.Key); ok {
			t.Error("too-large object stored")
		}
		if files, _ := diskUsage(t, dir); files != 0 {
			t.Errorf("%d object files", files)
		}
		if tmp := tmpFiles(t, dir); len(tmp) != 0 {
			t.Errorf("temp files left: %v", tmp)
		}
	})
	t.Run("memory: writer and followers get ErrTooLarge", func(t *testing.T) {
		s := openStore(t, Config{MemoryBytes: 1 << 20, MaxObjectBytes: limit})
		m := testMeta("http://example.com/huge")
		f, _ := s.Begin(m)
		r := f.NewReader()
		if _, err := f.Write(body(limit, 1)); err != nil {
			t.Fatalf("Write up to the limit: %v", err)
		}
		if _, err := f.Write([]byte("x")); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Write past the limit = %v, want ErrTooLarge", err)
		}
		if _, err := follow(r); !errors.Is(err, ErrTooLarge) {
			t.Errorf("follower error = %v, want ErrTooLarge", err)
		}
		if err := f.Commit(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Commit = %v, want ErrTooLarge", err)
		}
		if _, ok := s.Get(m.Key); ok {
			t.Error("too-large object stored")
		}
	})
	t.Run("memory: MaxMemoryObject caps memory-only objects", func(t *testing.T) {
		s := openStore(t, Config{MemoryBytes: 1 << 20, MaxMemoryObject: 1000})
		f, _ := s.Begin(testMeta("http://example.com/k"))
		if _, err := f.Write(body(1001, 1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Write = %v, want ErrTooLarge", err)
		}
	})
}

func TestCloseAbortsFills(t *testing.T) {
	modes(t, Config{}, func(t *testing.T, s *Store, cfg Config) {
		f, _ := s.Begin(testMeta("http://example.com/unfinished"))
		r := f.NewReader()
		f.Write([]byte("abc"))
		s.Close()
		b, err := follow(r)
		if string(b) != "abc" || !errors.Is(err, ErrAborted) || !errors.Is(err, ErrClosed) {
			t.Errorf("follower got %q, %v; want abc, ErrAborted+ErrClosed", b, err)
		}
		if err := f.Commit(); err == nil {
			t.Error("Commit after Close succeeded")
		}
		if cfg.Dir != "" {
			if tmp := tmpFiles(t, cfg.Dir); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		}
	})
}

// TestReaderCloseUnblocks: closing a follower from another goroutine ends its blocked Read.
func TestReaderCloseUnblocks(t *testing.T) {
	s := openStore(t, Config{})
	f, _ := s.Begin(testMeta("http://example.com/k"))
	defer f.Abort()
	r := f.NewReader()
	done := make(chan error)
	go func() { _, err := r.Read(make([]byte, 10)); done <- err }()
	r.Close()
	if err := <-done; err == nil {
		t.Error("Read after Close returned no error")
	}
}

// TestStreamBoundedMemory streams 256 MiB through a disk fill with a follower and checks
// the heap stays small: the body lives in the temp file, not in memory.
func TestStreamBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	const (
		total    = 256 << 20
		step     = 64 << 10
		heapMax  = 64 << 20
		sampleMs = 5
	)
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, DiskBytes: 1 << 30})
	f, err := s.Begin(testMeta("http://example.com/big.iso"))
	if err != nil {
		t.Fatal(err)
	}
	// Byte i of the body is byte(i): every 64 KiB write is the same chunk, and any read
	// can be checked against a slice of pattern.
	pattern := make([]byte, step+256)
	for i := range pattern {
		pattern[i] = byte(i)
	}
	r := f.NewReader()
	var got atomic.Int64
	readDone := make(chan error)
	go func() {
		defer r.Close()
		p := make([]byte, 32<<10)
		for {
			n, err := r.Read(p)
			off := got.Load() % 256
			if !bytes.Equal(p[:n], pattern[off:off+int64(n)]) {
				readDone <- fmt.Errorf("bytes at %d differ", got.Load())
				return
			}
			got.Add(int64(n))
			if err == io.EOF {
				readDone <- nil
				return
			}
			if err != nil {
				readDone <- err
				return
			}
		}
	}()
	// Measure growth over what earlier tests left live, not the absolute heap.
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(sampleMs * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	chunk := pattern[:step]
	for off := 0; off < total; off += step {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-sampled
	if got.Load() != total {
		t.Errorf("follower read %d bytes, want %d", got.Load(), total)
	}
	grown := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("HeapInuse: %d KiB before, peak %d KiB while streaming %d MiB", base.HeapInuse>>10, peak.Load()>>10, total>>20)
	if grown > heapMax {
		t.Errorf("HeapInuse grew %d MiB while streaming %d MiB, want < %d MiB", grown>>20, total>>20, heapMax>>20)
	}
	o, ok := s.Get("http://example.com/big.iso")
	if !ok || o.Size() != total || o.Bytes() != nil {
		t.Errorf("stored object: ok %v", ok)
	}
}

func BenchmarkGetMemoryHit(b *testing.B) {
	s := openStore(b, Config{Dir: b.TempDir()})
	key := "http://example.com/static/app.js?v=123"
	put(b, s, testMeta(key), body(4096, 1))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if o, ok := s.Get(key); !ok || len(o.Bytes()) != 4096 {
				b.Fatal("miss")
			}
		}
	})
}
