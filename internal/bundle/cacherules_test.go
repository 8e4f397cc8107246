package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rulesSource is minimal with a cache section holding rules.
func rulesSource(cache string) string { return minimal + "    cache:\n" + cache }

// TestCacheRulesParse checks that rules decode with "given as 0 or false" told apart from
// "left out", and reach the snapshot spec that way.
func TestCacheRulesParse(t *testing.T) {
	c := mustParse(t, rulesSource(`      disabled: true
      default_ttl: 1m
      rules:
        - path_prefix: /static/
          bypass: false
          default_ttl: 0s
        - path_regex: '\.css$'
          ignore_request_no_cache: false
          max_heuristic: 2h
        - path_prefix: /api/
          bypass: true
          always_online: 1h
          max_ttl: ~
`))
	want := []CacheRule{
		{PathPrefix: "/static/", Bypass: new(false), DefaultTTL: new(Duration(0))},
		{PathRegex: `\.css$`, IgnoreRequestNoCache: new(false), MaxHeuristic: new(Duration(2 * time.Hour))},
		{PathPrefix: "/api/", Bypass: new(true), AlwaysOnline: new(Duration(time.Hour))}, // null: left out
	}
	if got := c.Sites[0].Cache.Rules; !reflect.DeepEqual(got, want) {
		t.Fatalf("rules:\n got %s\nwant %s", show(got), show(want))
	}
	spec := c.Spec("1").Sites[0].Cache.Rules
	if len(spec) != 3 || spec[0].PathPrefix != "/static/" || spec[0].Bypass == nil || *spec[0].Bypass ||
		spec[0].DefaultTTL == nil || *spec[0].DefaultTTL != 0 || spec[0].MaxTTL != nil ||
		spec[1].PathRegex != `\.css$` || *spec[1].MaxHeuristic != 2*time.Hour || spec[1].DefaultTTL != nil ||
		*spec[2].AlwaysOnline != time.Hour || spec[2].MaxTTL != nil {
		t.Fatalf("Spec: %+v", spec)
	}
	// The spec shares nothing with the config.
	*c.Sites[0].Cache.Rules[0].Bypass = true
	*c.Sites[0].Cache.Rules[0].DefaultTTL = Duration(time.Hour)
	if *spec[0].Bypass || *spec[0].DefaultTTL != 0 {
		t.Error("Spec shares pointers with the config")
	}
}

func show(rules []CacheRule) string {
	b, _ := json.Marshal(rules)
	return string(b)
}

// TestCacheRulesSignVerify sends rules through sign, encode, decode and verify, and checks
// that a field given as 0 or false is written in the canonical body and one left out is not.
func TestCacheRulesSignVerify(t *testing.T) {
	src := rulesSource(`      rules:
        - {path_prefix: /static/, default_ttl: 1h, max_ttl: 0s}
        - {path_regex: '\.(css|js|png|woff2)$', default_ttl: 168h}
        - {path_prefix: /api/, bypass: true}
        - {path_prefix: /live/, bypass: false, ignore_request_no_cache: false}
`)
	a := newKey(t)
	s := sign(t, src, a)
	body := string(s.Body)
	for _, w := range []string{
		`"rules":[{"path_prefix":"/static/","default_ttl":"1h0m0s","max_ttl":"0s"},`,
		`{"path_regex":"\\.(css|js|png|woff2)$","default_ttl":"168h0m0s"},`,
		`{"path_prefix":"/api/","bypass":true},`,
		`{"path_prefix":"/live/","bypass":false,"ignore_request_no_cache":false}]`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("body lacks %s:\n%s", w, body)
		}
	}
	file, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(d, trust(t, 1, a))
	if err != nil {
		t.Fatal(err)
	}
	if want := mustParse(t, src); !reflect.DeepEqual(got.Config, want) {
		t.Errorf("verified config differs:\n got %+v\nwant %+v", got.Config.Sites[0].Cache, want.Sites[0].Cache)
	}
	again, err := got.Canonical()
	if err != nil || !bytes.Equal(again, s.Body) {
		t.Errorf("verified body does not re-encode to the signed bytes: %v", err)
	}

	// A rule field written as null would read as "left out" and encode without it: another
	// spelling of the same body, refused as not canonical.
	raw := bytes.Replace(s.Body, []byte(`"bypass":true`), []byte(`"bypass":null`), 1)
	_, err = Verify(signRaw(t, raw, a), trust(t, 1, a))
	wantErr(t, err, "not in canonical form")

	// An empty list encodes as no list: one spelling for "no rules".
	empty := mustParse(t, rulesSource("      rules: []\n"))
	b1, _ := NewBody(empty, "", created).Canonical()
	b2, _ := NewBody(mustParse(t, minimal), "", created).Canonical()
	if !bytes.Equal(b1, b2) {
		t.Errorf("rules: [] encodes differently from no rules:\n%s\n%s", b1, b2)
	}
}

func TestCacheRulesBad(t *testing.T) {
	many := func(n int, rule string) string {
		var b strings.Builder
		b.WriteString("      rules:\n")
		for i := range n {
			fmt.Fprintf(&b, "        - "+rule+"\n", i)
		}
		return b.String()
	}
	for _, c := range []struct {
		name, cache string
		want        []string
	}{
		{"bypass not a boolean", "      rules: [{path_prefix: /a, bypass: yes}]\n",
			[]string{`line 7: sites[0].cache.rules[0].bypass: want true or false, got the string "yes"`}},
		{"duration without unit", "      rules: [{path_prefix: /a, default_ttl: 30}]\n",
			[]string{`line 7: sites[0].cache.rules[0].default_ttl: want a duration string such as "2s", got the number 30`}},
		{"duration as a mapping", "      rules: [{path_prefix: /a, max_ttl: {s: 1}}]\n",
			[]string{`line 7: sites[0].cache.rules[0].max_ttl: want a duration string such as "2s", got a mapping`}},
		{"unknown field", "      rules: [{path_prefix: /a, ttl: 1h}]\n", []string{`line 7: sites[0].cache.rules[0]: unknown field "ttl"`}},
		{"rules not a list", "      rules: {path_prefix: /a}\n", []string{`line 7: sites[0].cache.rules: want a list, got a mapping`}},
		{"no pattern", "      rules: [{default_ttl: 1h}]\n", []string{"sites[0].cache.rules[0]: set one of path_prefix or path_regex"}},
		{"both patterns", "      rules: [{path_prefix: /a, path_regex: a}]\n", []string{"sites[0].cache.rules[0]: set one of path_prefix or path_regex"}},
		{"backreference", `      rules: [{path_regex: '(a)\1'}]` + "\n",
			[]string{`sites[0].cache.rules[0].path_regex: invalid escape sequence: \1 (RE2 syntax: no backreferences or lookaround)`}},
		{"default_ttl above max_ttl", "      rules: [{path_prefix: /a, default_ttl: 2h, max_ttl: 1h}]\n",
			[]string{"sites[0].cache.rules[0].default_ttl: 2h0m0s exceeds max_ttl 1h0m0s"}},
		{"twice the limit", many(200, "{path_regex: 'a{1000}x%d'}"), []string{"sites[0].cache.rules: 200 rules exceed the limit of 100"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			cfg, err := ParseSource([]byte(rulesSource(c.cache)))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s", took)
			}
			if cfg != nil {
				t.Error("returned a config with the error")
			}
			wantErr(t, err, c.want...)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestCachingDocExamples parses the bundle sources shown in docs/caching.md, so that the
// documented cache rules stay valid.
func TestCachingDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../docs/caching.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.HasPrefix(m[1], "serial:") {
			continue
		}
		n++
		if _, err := ParseSource([]byte(m[1])); err != nil {
			t.Errorf("docs/caching.md, bundle source %d: %v", n, err)
		}
	}
	if n == 0 {
		t.Fatal("no bundle source found in docs/caching.md")
	}
}
