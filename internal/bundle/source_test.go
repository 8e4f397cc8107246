package bundle

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSourceExample(t *testing.T) {
	c, err := ParseSource(exampleSource(t))
	if err != nil {
		t.Fatalf("testdata/example.yaml: %v", err)
	}
	if c.Serial != 42 || len(c.Sites) != 2 {
		t.Fatalf("serial %d, %d sites", c.Serial, len(c.Sites))
	}
	shop := c.Sites[0]
	want := Site{
		Name:  "shop",
		Hosts: []string{"shop.example.com", "*.shop.example.com"},
		Pools: []Pool{
			{Name: "primary", Origins: []Origin{{URL: "http://10.0.0.1:8000", Weight: 2}, {URL: "http://10.0.0.2:8000"}},
				HealthCheck: &HealthCheck{Path: "/healthz", Method: "GET", Host: "shop.example.com", ExpectStatus: "200-399",
					BodyContains: "ok", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), Rise: 2, Fall: 3}},
			{Name: "fallback", Origins: []Origin{{URL: "https://backup.example.net"}}},
		},
		OriginHost:     "shop-origin.example.com",
		TrustedProxies: []string{"10.0.0.0/8", "192.0.2.10"},
		Cache: Cache{MaxTTL: Duration(24 * time.Hour), MaxHeuristic: Duration(time.Hour), IgnoreRequestNoCache: true,
			AlwaysOnline: Duration(168 * time.Hour), Rules: []CacheRule{
				{PathPrefix: "/static/", DefaultTTL: new(Duration(time.Hour)), MaxTTL: new(Duration(168 * time.Hour))},
				{PathRegex: `\.(css|js|woff2)$`, DefaultTTL: new(Duration(24 * time.Hour))},
				{PathPrefix: "/api/", Bypass: new(true)},
			}},
		Timeouts: Timeouts{Connect: Duration(3 * time.Second), FirstByte: Duration(10 * time.Second), Idle: Duration(30 * time.Second)},
		Retry:    Retry{Attempts: 3, BudgetPercent: 20, MinPerSecond: 10, Methods: []string{"PUT", "DELETE"}},
		Outlier:  Outlier{ConsecutiveFailures: 5, BaseEjection: Duration(5 * time.Second), MaxEjection: Duration(5 * time.Minute)},
	}
	if !reflect.DeepEqual(shop, want) {
		t.Errorf("sites[0]:\n got %+v\nwant %+v", shop, want)
	}
	blog := c.Sites[1]
	if blog.Name != "blog" || len(blog.Origins) != 1 || blog.Pools != nil || blog.Cache.DefaultTTL != Duration(5*time.Minute) {
		t.Errorf("sites[1]: %+v", blog)
	}
	spec := c.Spec("42")
	if spec.Version != "42" || spec.Sites[0].Pools[0].HealthCheck.Interval != 2*time.Second ||
		spec.Sites[0].Cache.AlwaysOnline != 168*time.Hour || spec.Sites[1].Origins[0].URL != "https://blog-origin.example.net/wordpress" {
		t.Errorf("Spec: %+v", spec)
	}
}

func TestParseSourceGood(t *testing.T) {
	for _, c := range []struct {
		name, src string
		check     func(*Config) error
	}{
		{"minimal", minimal, nil},
		{"document start marker and comments", "---\n# comment\n" + minimal, nil},
		{"flow style", `{serial: 3, sites: [{name: a, hosts: [a.example], origins: [{url: "http://o.example"}]}]}`, nil},
		{"expect_status as a number", minimal + `    pools: []
  - name: b
    hosts: [b.example]
    pools: [{name: p, origins: [{url: "http://o"}], health_check: {path: /h, expect_status: 204}}]
`, func(c *Config) error {
			if got := c.Sites[1].Pools[0].HealthCheck.ExpectStatus; got != "204" {
				return fmt.Errorf("expect_status %q", got)
			}
			return nil
		}},
		{"nulls leave defaults", minimal + "    cache:\n    timeouts: ~\n", func(c *Config) error {
			if !reflect.DeepEqual(c.Sites[0].Cache, Cache{}) {
				return fmt.Errorf("cache %+v", c.Sites[0].Cache)
			}
			return nil
		}},
		{"integer forms and float", minimal + "    retry: {attempts: 0x3, budget_percent: 12.5, min_per_second: 1_000}\n", func(c *Config) error {
			if r := c.Sites[0].Retry; r.Attempts != 3 || r.BudgetPercent != 12.5 || r.MinPerSecond != 1000 {
				return fmt.Errorf("retry %+v", r)
			}
			return nil
		}},
		{"anchors and merge keys", `serial: 9
sites:
  - name: a
    hosts: [a.example]
    origins: &origins [{url: "http://o1"}, {url: "http://o2"}]
    timeouts: &timeouts {connect: 1s, first_byte: 5s}
  - name: b
    hosts: [b.example]
    origins: *origins
    timeouts:
      <<: *timeouts
      connect: 2s
`, func(c *Config) error {
			b := c.Sites[1]
			if len(b.Origins) != 2 || b.Timeouts.Connect != Duration(2*time.Second) || b.Timeouts.FirstByte != Duration(5*time.Second) {
				return fmt.Errorf("site b %+v", b)
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseSource([]byte(c.src))
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				if err := c.check(cfg); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// bomb is the classic billion laughs: nine levels of ten aliases, 10^9 strings expanded.
func bomb() string {
	var b strings.Builder
	b.WriteString("serial: 1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	return b.String()
}

// mergeBomb hides the same expansion where the schema allows it: merge keys in sites, each
// level merging ten copies of the one before.
func mergeBomb() string {
	var b strings.Builder
	b.WriteString("serial: 1\nsites:\n  - &s0 {name: a, hosts: [a.example], origins: [{url: \"http://o\"}]}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "  - &s%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*s%d, ", i-1), 10), ", "))
	}
	return b.String()
}

// aliasBomb repeats one big site through aliases until it would outgrow the budget.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("serial: 1\nsites:\n  - &s {name: a, hosts: [")
	b.WriteString(strings.TrimSuffix(strings.Repeat("h.example, ", 100), ", "))
	b.WriteString("], origins: [{url: \"http://o\"}]}\n")
	for range 20000 {
		b.WriteString("  - *s\n")
	}
	return b.String()
}

func TestParseSourceBad(t *testing.T) {
	manySites := func(n int) string {
		var b strings.Builder
		b.WriteString("serial: 1\nsites:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: s%d, hosts: [h%d.example], origins: [{url: \"http://o\"}]}\n", i, i)
		}
		return b.String()
	}
	cases := []struct {
		name, src string
		want      []string
	}{
		{"empty", "", []string{"empty"}},
		{"only a comment", "# nothing\n", []string{"empty"}},
		{"syntax error", "serial: 1\nsites: [\n", []string{"line 2: did not find expected node content"}},
		{"root is a list", "- serial: 1\n", []string{"line 1: want a mapping, got a list"}},
		{"unknown key at top level", "serial: 1\nsitez: []\n", []string{`line 2: unknown field "sitez"`}},
		{"unknown key nested", minimal + "    pools:\n      - name: p\n        origins: [{url: \"http://o\"}]\n        helth_check: {path: /}\n",
			[]string{`line 9: sites[0].pools[0]: unknown field "helth_check"`}},
		{"unknown key in origin", "serial: 1\nsites:\n  - name: a\n    hosts: [a]\n    origins: [{url: \"http://o\", wieght: 2}]\n",
			[]string{`line 5: sites[0].origins[0]: unknown field "wieght"`}},
		{"wrong type: string for list", "serial: 1\nsites:\n  - name: a\n    hosts: a.example\n",
			[]string{`line 4: sites[0].hosts: want a list, got the string "a.example"`}},
		{"wrong type: yes for bool", minimal + "    cache: {disabled: yes}\n",
			[]string{`line 6: sites[0].cache.disabled: want true or false, got the string "yes"`}},
		{"wrong type: string for int", "serial: 1\nsites:\n  - name: a\n    hosts: [a]\n    origins: [{url: \"http://o\", weight: \"2\"}]\n",
			[]string{`line 5: sites[0].origins[0].weight: want a whole number, got the string "2"`}},
		{"wrong type: number for string", "serial: 1\nsites:\n  - name: 123\n", []string{`line 3: sites[0].name: want a string, got the number 123`}},
		{"wrong type: mapping for sites", "serial: 1\nsites: {name: a}\n", []string{`line 2: sites: want a list, got a mapping`}},
		{"wrong type: quoted serial", "serial: \"7\"\n", []string{`line 1: serial: want a whole number above 0, got the string "7"`}},
		{"not a finite number", minimal + "    retry: {budget_percent: .nan}\n", []string{"line 6: sites[0].retry.budget_percent: want a finite number"}},
		{"duplicate key", "serial: 1\nsites:\n  - name: a\n    hosts: [a]\n    name: b\n",
			[]string{`line 5: sites[0]: duplicate field "name" (first at line 3)`}},
		{"duplicate key at top level", minimal + "serial: 2\n", []string{`line 6: duplicate field "serial" (first at line 1)`}},
		{"two documents", minimal + "---\nserial: 2\n", []string{"line 7: a second YAML document"}},
		{"empty second document", minimal + "---\n", []string{"a second YAML document"}},
		{"bad duration", minimal + "    timeouts: {connect: 2 seconds}\n",
			[]string{`line 6: sites[0].timeouts.connect: "2 seconds": want a duration such as`}},
		{"duration without unit", minimal + "    timeouts: {connect: 30}\n",
			[]string{`line 6: sites[0].timeouts.connect: want a duration string such as "2s", got the number 30`}},
		{"negative duration", minimal + "    timeouts: {connect: -1s}\n", []string{`sites[0].timeouts.connect: -1s out of range`}},
		{"negative serial", strings.Replace(minimal, "serial: 1", "serial: -3", 1),
			[]string{"line 1: serial: want a whole number above 0, got the number -3"}},
		{"zero serial", strings.Replace(minimal, "serial: 1", "serial: 0", 1), []string{"serial: must be > 0"}},
		{"no serial", strings.Replace(minimal, "serial: 1\n", "", 1), []string{"serial: must be > 0"}},
		{"billion laughs", bomb(), []string{`line 2: unknown field "l0"`}},
		{"billion laughs through merge keys", mergeBomb(), []string{"sites[", "expands to more than"}},
		{"aliases repeating a large site", aliasBomb(), []string{"sites[", "expands to more than"}},
		{"alias containing itself", "serial: 1\nsites:\n  - &a {<<: *a}\n", []string{"line 3: sites[0]: nested more than"}},
		{"list containing itself", "serial: 1\nsites: &a [*a]\n", []string{"line 2: sites[0]: want a mapping, got a list"}},
		{"merge of a scalar", "serial: 1\nsites:\n  - {<<: x}\n", []string{"line 3: sites[0]: <<: want a mapping"}},
		{"key that is a list", "serial: 1\n[a]: 1\n", []string{"line 2: keys must be plain names, got a list"}},
		{"binary tag", "serial: 1\nsites:\n  - name: !!binary aGVsbG8=\n", []string{"line 3: sites[0].name: want a string, got !!binary"}},
		{"over MaxSourceBytes", minimal + "#" + strings.Repeat("x", MaxSourceBytes), []string{"source: too large", "exceed the limit of 1048576"}},
		{"invalid origin URL", strings.Replace(minimal, "http://10.0.0.1:8000", "ftp://x", 1),
			[]string{`sites[0].origins[0].url: "ftp://x": scheme "ftp" not allowed`}},
		{"too many sites", manySites(10001), []string{"sites: 10001 sites exceed the limit of 10000"}},
		{"several errors at once", "serial: x\nsites:\n  - nam: a\n    hosts: 1\n",
			[]string{"line 1: serial", `line 3: sites[0]: unknown field "nam"`, "line 4: sites[0].hosts: want a list"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			cfg, err := ParseSource([]byte(c.src))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s", took)
			}
			if cfg != nil {
				t.Errorf("returned a config with the error")
			}
			wantErr(t, err, c.want...)
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Errorf("error %q wraps neither ErrInvalid nor ErrTooLarge", err)
			}
		})
	}
}

// TestParseSourceErrorsCapped checks that a source full of mistakes gives a bounded message.
func TestParseSourceErrorsCapped(t *testing.T) {
	src := "serial: 1\nsites:\n" + strings.Repeat("  - {nam: a}\n", 1000)
	_, err := ParseSource([]byte(src))
	wantErr(t, err, "too many errors")
	if n := strings.Count(err.Error(), "\n"); n > maxErrors+1 {
		t.Errorf("%d lines of errors", n)
	}
}

// TestExampleErrorsInComments keeps the error messages quoted at the top of
// testdata/example.yaml true: they are what an operator sees for those two mistakes.
func TestExampleErrorsInComments(t *testing.T) {
	src := string(exampleSource(t))
	for _, c := range []struct{ from, to, want string }{
		{"health_check:", "helth_check:", `line 34: sites[0].pools[0]: unknown field "helth_check"`},
		{"https://blog-origin.example.net/wordpress", "ftp://x", `sites[1].origins[0].url: "ftp://x": scheme "ftp" not allowed (use http or https)`},
	} {
		if !strings.Contains(src, "#     "+c.want+"\n") {
			t.Errorf("example.yaml does not quote %q", c.want)
		}
		_, err := ParseSource([]byte(strings.Replace(src, c.from, c.to, 1)))
		if err == nil || err.Error() != c.want {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}
