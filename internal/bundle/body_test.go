package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/example.body.json")

// TestCanonicalGolden pins the canonical bytes of the example: if they change, every
// signature ever made over such a body stops verifying, so a change must be deliberate
// (go test -run Golden -update, and a new domain string in signed.go).
func TestCanonicalGolden(t *testing.T) {
	c, err := ParseSource(exampleSource(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewBody(c, strings.Repeat("ab", 32), created).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/example.body.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("canonical bytes differ from %s:\n got %s\nwant %s", golden, got, want)
	}
}

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ name, src string }{
		{"minimal", minimal},
		{"example", string(exampleSource(t))},
		{"html characters and unicode", `serial: 1
sites:
  - name: www
    hosts: [www.example.com]
    pools:
      - name: p
        origins: [{url: "http://o"}]
        health_check: {path: "/h?a=1&b=<2>", body_contains: "\u00fcn\u00efcode \u2028 <ok>"}
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustParse(t, c.src)
			b := NewBody(cfg, "", created)
			first, err := b.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				again, _ := b.Canonical()
				if !bytes.Equal(first, again) {
					t.Fatalf("not deterministic:\n%s\n%s", first, again)
				}
			}
			if bytes.HasSuffix(first, []byte("\n")) {
				t.Error("trailing newline")
			}
			if bytes.Contains(first, []byte(`\u003c`)) || bytes.Contains(first, []byte(`\u0026`)) {
				t.Errorf("HTML escaping in %s", first)
			}
			// Round trip: decode the bytes as a node would, encode again.
			var back Body
			if err := json.Unmarshal(first, &back); err != nil {
				t.Fatal(err)
			}
			second, err := back.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("round trip changed the bytes:\n%s\n%s", first, second)
			}
		})
	}
}

func TestCanonicalIgnoresSpelling(t *testing.T) {
	// The same config in another YAML spelling (flow style, key order, anchors, "60s" for
	// "1m") must give the same body bytes: what is signed is the config, not its source text.
	other := `sites:
  - origins: &o [{weight: 0, url: "http://10.0.0.1:8000"}]
    hosts: ["www.example.com"]
    name: www
    timeouts: {idle: 60s}
serial: 0x1
`
	a, err := NewBody(mustParse(t, minimal+"    timeouts: {idle: 1m}\n"), "", created).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBody(mustParse(t, other), "", created).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("different bytes for one config:\n%s\n%s", a, b)
	}
}

func TestCanonicalZone(t *testing.T) {
	cfg := mustParse(t, minimal)
	paris := time.FixedZone("CET", 3600)
	a, _ := (&Body{Serial: 1, Created: created, Config: cfg}).Canonical()
	b, _ := (&Body{Serial: 1, Created: created.In(paris), Config: cfg}).Canonical()
	if !bytes.Equal(a, b) {
		t.Errorf("the zone of Created changed the bytes:\n%s\n%s", a, b)
	}
}

func TestSignRefusesBadBodies(t *testing.T) {
	key := newKey(t)
	cfg := mustParse(t, minimal)
	for _, c := range []struct {
		name string
		body *Body
		want string
	}{
		{"nil body", nil, "body: nil"},
		{"no config", &Body{Serial: 1, Created: created}, "body: config: required"},
		{"serial mismatch", &Body{Serial: 2, Created: created, Config: cfg}, "body: serial: 2 differs from config serial 1"},
		{"bad parent", &Body{Serial: 1, Parent: "xyz", Created: created, Config: cfg}, "body: parent: want 64 lower-case hex digits"},
		{"upper-case parent", &Body{Serial: 1, Parent: strings.Repeat("AB", 32), Created: created, Config: cfg}, "parent"},
		{"zero serial", &Body{Created: created, Config: &Config{Sites: cfg.Sites}}, "body: serial: must be > 0"},
		{"invalid config", &Body{Serial: 1, Created: created, Config: &Config{Serial: 1}}, "body: sites: at least one site is required"},
		{"invalid UTF-8", &Body{Serial: 1, Created: created, Config: &Config{Serial: 1, Sites: []Site{{Name: "www", Hosts: []string{"www.example.com"},
			Pools: []Pool{{Name: "p", Origins: []Origin{{URL: "http://o"}}, HealthCheck: &HealthCheck{Path: "/", BodyContains: "\xff"}}}}}}},
			"body: not in canonical form"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Sign(c.body, key)
			if s != nil {
				t.Error("signed")
			}
			wantErr(t, err, c.want)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}
