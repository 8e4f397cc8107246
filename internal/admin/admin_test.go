package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"rhizome/internal/cache"
)

func store(t *testing.T, keys ...string) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Config{MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, k := range keys {
		f, err := s.Begin(cache.Meta{Key: k, Status: 200, Header: http.Header{}, Tags: []string{"t"}})
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("x"))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestPurgeValidation(t *testing.T) {
	many := make([]string, MaxPurgeItems+1)
	for i := range many {
		many[i] = fmt.Sprintf("tag-%d", i)
	}
	for _, c := range []struct {
		req  PurgeRequest
		want string
	}{
		{PurgeRequest{}, "nothing to purge"},
		{PurgeRequest{URLs: []string{"https://a/x", "ftp://b/"}}, `urls[1]: "ftp://b/": want an absolute http(s) URL`},
		{PurgeRequest{Prefixes: []string{"/relative"}}, "prefixes[0]"},
		{PurgeRequest{Tags: []string{"ok", " "}}, "tags[1]: empty tag"},
		{PurgeRequest{Tags: many}, "1001 items exceed the limit of 1000"},
	} {
		s := store(t, "http://a/x")
		if _, err := Purge(s, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.req, err, c.want)
		}
		if _, ok := s.Get("http://a/x"); !ok {
			t.Errorf("%+v: a refused purge removed something", c.req)
		}
	}
}

func TestPurgeCoversBothSchemes(t *testing.T) {
	s := store(t, "http://a/x", "https://a/x", "http://a/y")
	n, err := Purge(s, PurgeRequest{URLs: []string{"https://A/x"}})
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want both schemes of /x", n, err)
	}
	if _, ok := s.Get("http://a/y"); !ok {
		t.Fatal("purged more than asked")
	}
}
