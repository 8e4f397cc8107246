package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// quietLogger keeps expected warnings (corrupt files) out of test output.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMeta(key string, tags ...string) Meta {
	now := time.Date(2026, 11, 3, 10, 0, 0, 123456789, time.UTC)
	return Meta{
		Key:          key,
		Status:       200,
		Header:       http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		RequestTime:  now,
		ResponseTime: now.Add(time.Second),
		Tags:         tags,
	}
}

func body(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t testing.TB, s *Store, m Meta, b []byte) {
	t.Helper()
	f, err := s.Begin(m)
	if err != nil {
		t.Fatalf("Begin(%q): %v", m.Key, err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatalf("Write(%q): %v", m.Key, err)
	}
	if err := f.Commit(); err != nil {
		t.Fatalf("Commit(%q): %v", m.Key, err)
	}
}

func readObject(t testing.TB, o *Object) []byte {
	t.Helper()
	b, err := o.Open()
	if err != nil {
		t.Fatalf("Object.Open(%q): %v", o.Meta().Key, err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read body of %q: %v", o.Meta().Key, err)
	}
	if int64(len(got)) != b.Size() {
		t.Fatalf("body of %q: read %d bytes, Size says %d", o.Meta().Key, len(got), b.Size())
	}
	return got
}

func checkMeta(t testing.TB, got *Meta, want Meta, size int) {
	t.Helper()
	if got.Key != want.Key || got.Status != want.Status || got.Size != int64(size) {
		t.Errorf("meta = key %q status %d size %d, want %q %d %d", got.Key, got.Status, got.Size, want.Key, want.Status, size)
	}
	if !got.RequestTime.Equal(want.RequestTime) || !got.ResponseTime.Equal(want.ResponseTime) {
		t.Errorf("meta times = %v %v, want %v %v", got.RequestTime, got.ResponseTime, want.RequestTime, want.ResponseTime)
	}
	if len(got.Header) != len(want.Header) {
		t.Errorf("meta header = %v, want %v", got.Header, want.Header)
	}
	for k, vs := range want.Header {
		if !slices.Equal(got.Header[k], vs) {
			t.Errorf("meta header %q = %q, want %q", k, got.Header[k], vs)
		}
	}
	if !slices.Equal(got.Tags, want.Tags) {
		t.Errorf("meta tags = %q, want %q", got.Tags, want.Tags)
	}
}

// mustGet fetches key and checks meta and body.
func mustGet(t testing.TB, s *Store, want Meta, wantBody []byte) *Object {
	t.Helper()
	o, ok := s.Get(want.Key)
	if !ok {
		t.Fatalf("Get(%q): miss", want.Key)
	}
	checkMeta(t, o.Meta(), want, len(wantBody))
	if got := readObject(t, o); !bytes.Equal(got, wantBody) {
		t.Fatalf("Get(%q): body differs (%d bytes, want %d)", want.Key, len(got), len(wantBody))
	}
	return o
}

// diskUsage sums the object files on disk, the real bytes the disk bound is about.
func diskUsage(t testing.TB, dir string) (files int, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, objectsDirName), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, bytes
}

func tmpFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, tmpDirName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// modes runs a test for the memory-only and the disk configuration.
func modes(t *testing.T, cfg Config, fn func(t *testing.T, s *Store, cfg Config)) {
	for _, mode := range []string{"memory", "disk"} {
		t.Run(mode, func(t *testing.T) {
			c := cfg
			if mode == "disk" {
				c.Dir = t.TempDir()
			}
			fn(t, openStore(t, c), c)
		})
	}
}

func TestStoreGet(t *testing.T) {
	cfg := Config{MemoryBytes: 1 << 20, MaxMemoryObject: 64 << 10, DiskBytes: 8 << 20}
	tests := []struct {
		name      string
		dir       bool
		size      int
		wantBytes bool // memory-resident
	}{
		{"memory only small", false, 1000, true},
		{"memory only empty body", false, 0, true},
		{"disk small is also in memory", true, 1000, true},
		{"disk empty body", true, 0, true},
		{"disk large is disk only", true, 200 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.dir {
				c.Dir = t.TempDir()
			}
			s := openStore(t, c)
			m := testMeta("http://example.com/a?b", "t1")
			b := body(tt.size, 1)
			if _, ok := s.Get(m.Key); ok {
				t.Fatal("Get before Commit: hit")
			}
			put(t, s, m, b)
			o := mustGet(t, s, m, b)
			if got := o.Bytes() != nil; got != tt.wantBytes {
				t.Errorf("Bytes() != nil is %v, want %v", got, tt.wantBytes)
			}
			if tt.wantBytes && !bytes.Equal(o.Bytes(), b) {
				t.Error("Bytes() differs from body")
			}
			// Random access for Range answers.
			if tt.size > 10 {
				bd, err := o.Open()
				if err != nil {
					t.Fatal(err)
				}
				p := make([]byte, 5)
				if _, err := bd.ReadAt(p, 5); err != nil || !bytes.Equal(p, b[5:10]) {
					t.Errorf("ReadAt(5) = %x, %v; want %x", p, err, b[5:10])
				}
				bd.Close()
			}
			if _, ok := s.Get(m.Key + "x"); ok {
				t.Error("Get of another key: hit")
			}
			if tt.dir {
				// Drop the memory copy: the next Get reads disk and promotes again.
				s.mem.Invalidate(m.Key)
				o := mustGet(t, s, m, b)
				if got := o.Bytes() != nil; got != tt.wantBytes {
					t.Errorf("after disk read Bytes() != nil is %v, want %v", got, tt.wantBytes)
				}
				if _, ok := s.mem.GetIfPresent(m.Key); ok != tt.wantBytes {
					t.Errorf("promoted to memory = %v, want %v", ok, tt.wantBytes)
				}
			}
			st := s.Stats()
			if st.Hits == 0 || st.Misses != 2 {
				t.Errorf("Stats hits %d misses %d, want >0 and 2", st.Hits, st.Misses)
			}
			// A commit replaces the previous object, and its old file.
			b2 := body(tt.size+3, 2)
			put(t, s, m, b2)
			mustGet(t, s, m, b2)
			if tt.dir {
				if n, _ := diskUsage(t, c.Dir); n != 1 {
					t.Errorf("%d files on disk after replace, want 1", n)
				}
			}
		})
	}
}

// TestRestart checks that objects, meta included, survive Close and Open.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MemoryBytes: 1 << 20, MaxMemoryObject: 64 << 10, DiskBytes: 16 << 20}
	weird := testMeta("http://example.com/\xff\xfe?q=1\x00accept-encoding=gzip", "tag\x00odd", "é")
	weird.Header.Set("X-Bin", "\x80\x81 value")
	weird.Status = 299
	long := testMeta("http://example.com/" + strings.Repeat("k", 8<<10))
	zeroTimes := Meta{Key: "http://example.com/zero"}
	objects := []struct {
		name string
		meta Meta
		body []byte
	}{
		{"small", testMeta("http://example.com/small", "a", "b"), body(100, 1)},
		{"large disk only", testMeta("http://example.com/large"), body(300<<10, 2)},
		{"empty body", testMeta("http://example.com/empty"), nil},
		{"binary key and header", weird, body(10, 3)},
		{"8 KiB key", long, body(10, 4)},
		{"zero times no header", zeroTimes, body(1, 5)},
	}
	s := openStore(t, cfg)
	for _, o := range objects {
		put(t, s, o.meta, o.body)
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	after := s.Stats()
	if after.DiskObjects != len(objects) || after.DiskBytes != before.DiskBytes {
		t.Errorf("after restart %d objects %d bytes, want %d %d", after.DiskObjects, after.DiskBytes, len(objects), before.DiskBytes)
	}
	for _, o := range objects {
		t.Run(o.name, func(t *testing.T) {
			mustGet(t, s, o.meta, o.body)
		})
	}
}

func TestOpenRefusesSharedDir(t *testing.T) {
	dir := t.TempDir()
	openStore(t, Config{Dir: dir})
	if s, err := Open(Config{Dir: dir, Logger: quietLogger()}); err == nil {
		s.Close()
		t.Fatal("second Open of one dir succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative memory", Config{MemoryBytes: -1}},
		{"negative disk", Config{Dir: "x", DiskBytes: -1}},
		{"max memory object over memory", Config{MemoryBytes: 1 << 20, MaxMemoryObject: 2 << 20}},
		{"max object over disk", Config{Dir: "x", DiskBytes: 1 << 20, MaxObjectBytes: 2 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.cfg.withDefaults(); err == nil {
				t.Fatal("no error")
			}
		})
	}
	c, err := Config{}.withDefaults()
	if err != nil || c.MemoryBytes != 256<<20 || c.MaxMemoryObject != 8<<20 || c.MaxObjectBytes != 8<<20 {
		t.Errorf("memory-only defaults = %+v, %v", c, err)
	}
	c, err = Config{Dir: "x"}.withDefaults()
	if err != nil || c.DiskBytes != 1<<30 || c.MaxObjectBytes != 256<<20 {
		t.Errorf("disk defaults = %+v, %v", c, err)
	}
}

// TestBoundsConcurrent writes ten times the bounds from many goroutines and checks both
// tiers stay within them, on disk in real bytes too.
func TestBoundsConcurrent(t *testing.T) {
	const (
		memBound  = 512 << 10
		diskBound = 2 << 20
	)
	cfg := Config{MemoryBytes: memBound, DiskBytes: diskBound, MaxMemoryObject: 32 << 10, MaxObjectBytes: 64 << 10}
	modes(t, cfg, func(t *testing.T, s *Store, cfg Config) {
		const workers = 16
		total := int64(10 * max(memBound, diskBound))
		if cfg.Dir == "" {
			total = 10 * memBound
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 1))
				var done int64
				for i := 0; done < total/workers; i++ {
					n := r.IntN(int(cfg.MaxMemoryObject))
					if cfg.Dir != "" && i%4 == 0 {
						n = r.IntN(int(cfg.MaxObjectBytes)) // some disk-only objects
					}
					key := fmt.Sprintf("http://example.com/%d/%d", w, r.IntN(200))
					f, err := s.Begin(testMeta(key, fmt.Sprint("w", w)))
					if err != nil {
						t.Error(err)
						return
					}
					f.Write(body(n, uint64(i)))
					// Other workers purge this worker's tag now and then: a fill they
					// catch in flight is refused, as it should be.
					if err := f.Commit(); err != nil && !errors.Is(err, ErrPurged) {
						t.Error(err)
						return
					}
					done += int64(n)
					s.Get(fmt.Sprintf("http://example.com/%d/%d", r.IntN(workers), r.IntN(200)))
					if i%50 == 0 {
						s.PurgeTag(fmt.Sprint("w", r.IntN(workers)))
					}
				}
			})
		}
		wg.Wait()
		s.mem.CleanUp() // otter evicts asynchronously; settle before measuring
		st := s.Stats()
		if st.MemoryBytes > memBound {
			t.Errorf("memory tier %d bytes, bound %d", st.MemoryBytes, memBound)
		}
		if st.MemoryObjects == 0 {
			t.Error("memory tier empty")
		}
		if cfg.Dir == "" {
			return
		}
		if st.DiskBytes > diskBound {
			t.Errorf("disk tier %d bytes, bound %d", st.DiskBytes, diskBound)
		}
		if st.Evictions == 0 {
			t.Error("no disk evictions recorded")
		}
		files, used := diskUsage(t, cfg.Dir)
		if used != st.DiskBytes || files != st.DiskObjects {
			t.Errorf("on disk %d files %d bytes, Stats says %d %d", files, used, st.DiskObjects, st.DiskBytes)
		}
		if used > diskBound {
			t.Errorf("%d bytes on disk, bound %d", used, diskBound)
		}
		if tmp := tmpFiles(t, cfg.Dir); len(tmp) != 0 {
			t.Errorf("temp files left: %v", tmp)
		}
	})
}

// TestDiskLRUKeepsMemoryHits checks that objects served only from memory still count as
// recent for the disk tier.
func TestDiskLRUKeepsMemoryHits(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, MemoryBytes: 1 << 20, DiskBytes: 64 << 10, MaxObjectBytes: 4 << 10})
	hot := testMeta("http://example.com/hot")
	put(t, s, hot, body(1000, 1))
	for i := range 200 {
		put(t, s, testMeta(fmt.Sprint("http://example.com/cold/", i)), body(1000, uint64(i)))
		if _, ok := s.Get(hot.Key); !ok {
			t.Fatalf("hot object evicted after %d cold writes", i)
		}
	}
	s.mu.Lock()
	_, onDisk := s.idx[hot.Key]
	s.mu.Unlock()
	if !onDisk {
		t.Fatal("hot object fell out of the disk tier")
	}
}

func TestPurge(t *testing.T) {
	keys := []struct {
		key  string
		tags []string
	}{
		{"http://a.example/x", []string{"red", "Blue"}},
		{"http://a.example/x\x00gzip", []string{"red"}},
		{"http://a.example/x\x00br", nil},
		{"http://a.example/xy", []string{"blue"}},
		{"http://a.example/y", []string{"red"}},
		{"http://b.example/x", []string{"green"}},
	}
	tests := []struct {
		name  string
		purge func(*Store) int
		want  int
		gone  []string
	}{
		{"url with variants", func(s *Store) int { return s.PurgeURL("http://a.example/x") }, 3,
			[]string{"http://a.example/x", "http://a.example/x\x00gzip", "http://a.example/x\x00br"}},
		{"url single variant", func(s *Store) int { return s.PurgeURL("http://a.example/x\x00br") }, 1,
			[]string{"http://a.example/x\x00br"}},
		{"url absent", func(s *Store) int { return s.PurgeURL("http://c.example/") }, 0, nil},
		{"prefix", func(s *Store) int { return s.PurgePrefix("http://a.example/x") }, 4,
			[]string{"http://a.example/x", "http://a.example/x\x00gzip", "http://a.example/x\x00br", "http://a.example/xy"}},
		{"prefix all", func(s *Store) int { return s.PurgePrefix("") }, 6, nil},
		{"tag", func(s *Store) int { return s.PurgeTag("red") }, 3,
			[]string{"http://a.example/x", "http://a.example/x\x00gzip", "http://a.example/y"}},
		{"tag case-sensitive", func(s *Store) int { return s.PurgeTag("Blue") }, 1, []string{"http://a.example/x"}},
		{"delete", func(s *Store) int {
			if s.Delete("http://b.example/x") {
				return 1
			}
			return 0
		}, 1, []string{"http://b.example/x"}},
	}
	for _, restart := range []bool{false, true} {
		for _, dir := range []bool{false, true} {
			if restart && !dir {
				continue
			}
			for _, tt := range tests {
				name := fmt.Sprintf("%s/dir=%v/restart=%v", tt.name, dir, restart)
				t.Run(name, func(t *testing.T) {
					cfg := Config{MemoryBytes: 1 << 20}
					if dir {
						cfg.Dir = t.TempDir()
					}
					s := openStore(t, cfg)
					for i, k := range keys {
						put(t, s, testMeta(k.key, k.tags...), body(100, uint64(i)))
					}
					if restart {
						s.Close()
						s = openStore(t, cfg)
					}
					if got := tt.purge(s); got != tt.want {
						t.Errorf("purged %d, want %d", got, tt.want)
					}
					if tt.name == "prefix all" {
						tt.gone = nil
						for _, k := range keys {
							tt.gone = append(tt.gone, k.key)
						}
					}
					for _, k := range keys {
						_, ok := s.Get(k.key)
						if want := !slices.Contains(tt.gone, k.key); ok != want {
							t.Errorf("Get(%q) = %v after purge, want %v", k.key, ok, want)
						}
					}
					if dir {
						files, _ := diskUsage(t, cfg.Dir)
						if want := len(keys) - len(tt.gone); files != want {
							t.Errorf("%d files on disk after purge, want %d", files, want)
						}
						// And it stays purged across a restart.
						s.Close()
						s = openStore(t, cfg)
						for _, k := range tt.gone {
							if _, ok := s.Get(k); ok {
								t.Errorf("Get(%q) after purge and restart: hit", k)
							}
						}
					}
				})
			}
		}
	}
}

func TestUpdateMeta(t *testing.T) {
	cfg := Config{MemoryBytes: 1 << 20, MaxMemoryObject: 64 << 10}
	for _, size := range []int{100, 200 << 10} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) { testUpdateMeta(t, cfg, size) })
	}
}

func testUpdateMeta(t *testing.T, cfg Config, size int) {
	modes(t, cfg, func(t *testing.T, s *Store, cfg Config) {
		if cfg.Dir == "" && size > int(cfg.MaxMemoryObject) {
			t.Skip("not storable memory-only")
		}
		m := testMeta("http://example.com/u", "old")
		b := body(size, 9)
		put(t, s, m, b)
		o1, _ := s.Get(m.Key)

		nm := testMeta(m.Key, "new", "newer")
		nm.Header.Set("ETag", `"v2"`)
		nm.ResponseTime = nm.ResponseTime.Add(time.Hour)
		nm.Status = 200
		if err := s.UpdateMeta(m.Key, nm); err != nil {
			t.Fatalf("UpdateMeta: %v", err)
		}
		mustGet(t, s, nm, b)
		// An Object handed out before keeps its old meta and still reads its body.
		checkMeta(t, o1.Meta(), m, size)
		if got := readObject(t, o1); !bytes.Equal(got, b) {
			t.Error("old object body differs after UpdateMeta")
		}
		if n := s.PurgeTag("old"); n != 0 {
			t.Errorf("PurgeTag(old) = %d after UpdateMeta, want 0", n)
		}
		if err := s.UpdateMeta("http://example.com/absent", nm); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateMeta(absent) = %v, want ErrNotFound", err)
		}
		if cfg.Dir != "" {
			st := s.Stats()
			if _, used := diskUsage(t, cfg.Dir); used != st.DiskBytes {
				t.Errorf("disk %d bytes, Stats %d", used, st.DiskBytes)
			}
			s.Close()
			s = openStore(t, cfg)
			mustGet(t, s, nm, b)
		}
		if n := s.PurgeTag("newer"); n != 1 {
			t.Errorf("PurgeTag(newer) = %d, want 1", n)
		}
	})
}

// TestCorruptFilesRemovedAtOpen damages the data dir in the ways a crash or an operator
// can, and checks Open deletes what is invalid, logs it, and keeps what is valid.
func TestCorruptFilesRemovedAtOpen(t *testing.T) {
	validFile := func(t *testing.T, dir, key string) string {
		s := openStore(t, Config{Dir: dir})
		put(t, s, testMeta(key), body(5000, 1))
		s.Close()
		return filepath.Join(dir, objectsDirName, fileName(key)[:2], fileName(key))
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string) string // returns the path that must go
	}{
		{"garbage at object name", func(t *testing.T, dir string) string {
			n := fileName("garbage")
			p := filepath.Join(dir, objectsDirName, n[:2], n)
			os.WriteFile(p, []byte("not an object"), 0o644)
			return p
		}},
		{"empty file", func(t *testing.T, dir string) string {
			n := fileName("empty")
			p := filepath.Join(dir, objectsDirName, n[:2], n)
			os.WriteFile(p, nil, 0o644)
			return p
		}},
		{"truncated body", func(t *testing.T, dir string) string {
			p := validFile(t, dir, "http://example.com/trunc")
			os.Truncate(p, 3000)
			return p
		}},
		{"flipped meta byte", func(t *testing.T, dir string) string {
			p := validFile(t, dir, "http://example.com/flip")
			b, _ := os.ReadFile(p)
			b[preambleLen+3] ^= 0xff
			os.WriteFile(p, b, 0o644)
			return p
		}},
		{"future version", func(t *testing.T, dir string) string {
			p := validFile(t, dir, "http://example.com/ver")
			b, _ := os.ReadFile(p)
			b[4] = 99
			os.WriteFile(p, b, 0o644)
			return p
		}},
		{"valid file under wrong name", func(t *testing.T, dir string) string {
			p := validFile(t, dir, "http://example.com/moved")
			n := fileName("other")
			q := filepath.Join(dir, objectsDirName, n[:2], n)
			os.Rename(p, q)
			return q
		}},
		{"stray file name", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, objectsDirName, "ab", "notes.txt")
			os.WriteFile(p, []byte("x"), 0o644)
			return p
		}},
		{"stray top-level file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, objectsDirName, "README")
			os.WriteFile(p, []byte("x"), 0o644)
			return p
		}},
		{"leftover temp file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, tmpDirName, "fill-123")
			os.WriteFile(p, []byte("partial"), 0o644)
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			good := testMeta("http://example.com/good")
			goodBody := body(777, 3)
			s := openStore(t, Config{Dir: dir})
			put(t, s, good, goodBody)
			s.Close()
			bad := tt.damage(t, dir)

			var logs bytes.Buffer
			s = openStore(t, Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if _, err := os.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still exists after Open (err %v)", bad, err)
			}
			if !strings.Contains(tt.name, "temp") && !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("no warning logged; log: %s", logs.String())
			}
			mustGet(t, s, good, goodBody)
			if st := s.Stats(); st.DiskObjects != 1 {
				t.Errorf("%d objects indexed, want 1", st.DiskObjects)
			}
		})
	}
}

// TestDiskFileDamagedAfterOpen: a file that vanishes or is damaged behind the store's
// back is a miss, not an error or a crash, and leaves the index.
func TestDiskFileDamagedAfterOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, MemoryBytes: 1 << 20, MaxMemoryObject: 1 << 10})
	m := testMeta("http://example.com/d")
	put(t, s, m, body(5000, 1))
	p := filepath.Join(dir, objectsDirName, fileName(m.Key)[:2], fileName(m.Key))
	os.WriteFile(p, []byte("junk"), 0o644)
	if _, ok := s.Get(m.Key); ok {
		t.Fatal("Get of damaged file: hit")
	}
	if st := s.Stats(); st.DiskObjects != 0 || st.DiskBytes != 0 {
		t.Errorf("after damage Stats = %+v, want empty disk tier", st)
	}
}

// TestEvictedWhileOpen: a disk body opened before its object is removed or replaced reads
// fully; opening it afterwards fails with ErrNotFound.
func TestEvictedWhileOpen(t *testing.T) {
	tests := []struct {
		name   string
		remove func(t *testing.T, s *Store, key string)
	}{
		{"delete", func(t *testing.T, s *Store, key string) { s.Delete(key) }},
		{"purge", func(t *testing.T, s *Store, key string) { s.PurgeURL(key) }},
		{"evict", func(t *testing.T, s *Store, key string) {
			for i := range 20 {
				put(t, s, testMeta(fmt.Sprint("http://example.com/filler/", i)), body(100<<10, uint64(i)))
			}
			if _, ok := s.Get(key); ok {
				t.Fatal("object not evicted")
			}
		}},
		{"replace", func(t *testing.T, s *Store, key string) { put(t, s, testMeta(key), body(10, 5)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{Dir: t.TempDir(), MemoryBytes: 1 << 20, MaxMemoryObject: 16 << 10, DiskBytes: 1 << 20})
			m := testMeta("http://example.com/big")
			want := body(200<<10, 1)
			put(t, s, m, want)
			o, ok := s.Get(m.Key)
			if !ok || o.Bytes() != nil {
				t.Fatalf("Get: ok %v, memory-resident %v; want a disk-only object", ok, o != nil && o.Bytes() != nil)
			}
			bd, err := o.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer bd.Close()
			half := make([]byte, 100<<10)
			if _, err := io.ReadFull(bd, half); err != nil {
				t.Fatal(err)
			}
			tt.remove(t, s, m.Key)
			rest, err := io.ReadAll(bd)
			if err != nil {
				t.Fatalf("reading after removal: %v", err)
			}
			if !bytes.Equal(append(half, rest...), want) {
				t.Fatal("body read across removal differs")
			}
			if _, err := o.Open(); !errors.Is(err, ErrNotFound) {
				t.Errorf("Open after removal = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestBeginErrors(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	if _, err := s.Begin(Meta{}); err == nil {
		t.Error("Begin with empty key: no error")
	}
	if _, err := s.Begin(Meta{Key: "k", Header: http.Header{"X": {strings.Repeat("v", maxMetaLen)}}}); err == nil {
		t.Error("Begin with oversized meta: no error")
	}
	s.Close()
	if _, err := s.Begin(testMeta("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Begin after Close = %v, want ErrClosed", err)
	}
	if _, ok := s.Get("k"); ok {
		t.Error("Get after Close: hit")
	}
}

// TestMetaIsCopied: the caller may reuse its Meta (and header map) after Begin.
func TestMetaIsCopied(t *testing.T) {
	s := openStore(t, Config{})
	m := testMeta("http://example.com/c", "t")
	want := testMeta("http://example.com/c", "t")
	f, _ := s.Begin(m)
	m.Header.Set("Content-Type", "changed")
	m.Tags[0] = "changed"
	f.Write([]byte("x"))
	f.Commit()
	mustGet(t, s, want, []byte("x"))
}

// TestPurgeDuringFill: a purge that runs while an object is still arriving must win: the
// fill is not stored, though its follower still gets the whole body.
func TestPurgeDuringFill(t *testing.T) {
	for _, mode := range []string{"disk", "memory"} {
		t.Run(mode, func(t *testing.T) {
			cfg := Config{MemoryBytes: 1 << 20}
			if mode == "disk" {
				cfg.Dir = t.TempDir()
			}
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			f, err := s.Begin(Meta{Key: "http://x/a", Status: 200})
			if err != nil {
				t.Fatal(err)
			}
			rd := f.NewReader()
			defer rd.Close()
			f.Write([]byte("old "))
			gen := s.Generation()
			s.PurgePrefix("http://x/")
			if s.Generation() == gen {
				t.Fatal("purge did not move the generation")
			}
			f.Write([]byte("content"))
			if err := f.Commit(); !errors.Is(err, ErrPurged) {
				t.Fatalf("Commit after purge = %v, want ErrPurged", err)
			}
			b, err := io.ReadAll(rd)
			if err != nil || string(b) != "old content" {
				t.Fatalf("follower read %q, %v", b, err)
			}
			if _, ok := s.Get("http://x/a"); ok {
				t.Fatal("purged content was stored by a fill begun before the purge")
			}
		})
	}
}

// TestBeginSince: a body whose fetch began before a purge is not stored when the purge
// covers it, even though its fill begins after the purge; an unrelated purge does not matter.
func TestBeginSince(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir(), MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gen := s.Generation()
	s.PurgeURL("http://x/other")
	s.PurgeTag("t1")
	for _, c := range []struct {
		key, tag string
		stored   bool
	}{{"http://x/a", "t2", true}, {"http://x/other", "", false}, {"http://x/b", "t1", false}} {
		f, err := s.BeginSince(Meta{Key: c.key, Status: 200, Tags: []string{c.tag}}, gen)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("body"))
		err = f.Commit()
		if _, ok := s.Get(c.key); ok != c.stored || (err == nil) != c.stored {
			t.Fatalf("%s: stored %v, commit %v; want stored %v", c.key, ok, err, c.stored)
		}
	}
}
