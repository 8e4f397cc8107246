package upstream

import (
	"net/url"
	"testing"
)

func mustOrigin(t *testing.T, raw string, w int) *Origin {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &Origin{URL: u, Weight: w}
}

func TestPickWeighted(t *testing.T) {
	a, b := mustOrigin(t, "http://a", 3), mustOrigin(t, "http://b", 1)
	p := NewPool([]*Origin{a, b})
	counts := map[*Origin]int{}
	for range 400 {
		counts[p.Pick(nil)]++
	}
	if counts[a] != 300 || counts[b] != 100 {
		t.Fatalf("shares a=%d b=%d, want 300/100", counts[a], counts[b])
	}
}

func TestPickSkipsTried(t *testing.T) {
	a, b := mustOrigin(t, "http://a", 1), mustOrigin(t, "http://b", 5)
	p := NewPool([]*Origin{a, b})
	for range 20 {
		if got := p.Pick([]*Origin{b}); got != a {
			t.Fatalf("Pick skipping b = %v, want a", got.URL)
		}
	}
	if got := p.Pick([]*Origin{a, b}); got != nil {
		t.Fatalf("Pick with all tried = %v, want nil", got.URL)
	}
	if got := NewPool(nil).Pick(nil); got != nil {
		t.Fatal("empty pool returned an origin")
	}
}
