package node

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"rhizome/internal/bundle"
)

// signedUnchecked signs cfg without the validation bundle.Sign runs: what an attacker with
// a stolen key, or a buggy tool, could hand a node. The node must refuse it on its own.
func signedUnchecked(t *testing.T, cfg *bundle.Config, k keypair) []byte {
	t.Helper()
	body, err := (&bundle.Body{Serial: cfg.Serial, Created: time.Now().UTC(), Config: cfg}).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := bundle.Signed{Body: body, Signatures: []bundle.Signature{{KeyID: bundle.KeyID(k.pub),
		Sig: ed25519.Sign(k.priv, append([]byte("rhizome-bundle-v1\n"), body...))}}}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func siteWithRules(serial uint64, origin string, rules []bundle.CacheRule) *bundle.Config {
	return &bundle.Config{Serial: serial, Sites: []bundle.Site{{Name: "shop", Hosts: []string{"*"},
		Origins: []bundle.Origin{{URL: origin}}, Cache: bundle.Cache{Rules: rules}}}}
}

// TestAdversarialConfigs: correctly signed bundles whose content must not run — the
// November file's shape (a list twice its limit), regular expressions that no engine
// should be asked to run, a configuration that breaks the data plane only when it serves —
// are each refused with a reason naming the field, and the node keeps serving. A regular
// expression that would backtrack catastrophically in a backtracking engine is harmless
// here (RE2 matches in linear time), and a node serving it answers at once.
func TestAdversarialConfigs(t *testing.T) {
	op := newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 1, op))
	defer stop(t, n)
	good := origin(t, "good")
	if code, out := push(t, n, signed(t, source(5, good), op)); code != 200 {
		t.Fatalf("good push: %s", out)
	}
	twice := make([]bundle.CacheRule, 200)
	for i := range twice {
		twice[i] = bundle.CacheRule{PathRegex: fmt.Sprintf(`^/f%d/(\w+)$`, i)}
	}
	for _, c := range []struct {
		name, want string
		cfg        *bundle.Config
	}{
		{"a rule list twice its limit", "sites[0].cache.rules: 200 rules exceed the limit of 100", siteWithRules(6, good, twice)},
		{"an exploding regular expression", "sites[0].cache.rules[0].path_regex", siteWithRules(6, good, []bundle.CacheRule{{PathRegex: `(?:(?:a{0,1000}){0,1000})`}})},
		{"a backreference", "RE2", siteWithRules(6, good, []bundle.CacheRule{{PathRegex: `^/(a+)\1$`}})},
		{"a lookahead", "RE2", siteWithRules(6, good, []bundle.CacheRule{{PathRegex: `^/(?=admin)`}})},
		{"a huge wave count", "rollout.waves", &bundle.Config{Serial: 6, Sites: siteWithRules(6, good, nil).Sites,
			Rollout: &bundle.Rollout{Waves: make([]bundle.Wave, 11)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			code, out := push(t, n, signedUnchecked(t, c.cfg, op))
			if code == 200 || !strings.Contains(out, c.want) {
				t.Fatalf("push: %d %s; want a refusal containing %q", code, out, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("refusing took %v", d)
			}
			if code, body := get(t, n, "/"); code != 200 || body != "good" {
				t.Fatalf("node stopped serving the good bundle: %d %q", code, body)
			}
		})
	}

	// A configuration that compiles but breaks the request path: the self-test, whose
	// simulated origin here panics for one site, refuses it before it serves.
	saved := selfTestOrigin
	selfTestOrigin = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.Contains(r.Host, "broken") {
			panic("a bug this configuration triggers")
		}
		return saved.RoundTrip(r)
	})
	defer func() { selfTestOrigin = saved }()
	broken := &bundle.Config{Serial: 6, Sites: []bundle.Site{
		{Name: "shop", Hosts: []string{"*"}, Origins: []bundle.Origin{{URL: good}}},
		{Name: "broken", Hosts: []string{"broken.example.com"}, Origins: []bundle.Origin{{URL: good}}, OriginHost: "broken.example.com"},
	}}
	if code, out := push(t, n, signedUnchecked(t, broken, op)); code == 200 || !strings.Contains(out, "self-test: site broken: the request path panicked") {
		t.Fatalf("push of a bundle failing its self-test: %d %s", code, out)
	}
	selfTestOrigin = saved
	if code, body := get(t, n, "/"); code != 200 || body != "good" {
		t.Fatalf("node stopped serving after a self-test refusal: %d %q", code, body)
	}

	// (a+)+$ against a long path of a's ending in b: exponential for a backtracking
	// engine, linear for RE2. The node takes it and answers at once.
	evil := siteWithRules(7, good, []bundle.CacheRule{{PathRegex: `^/(a+)+$`, Bypass: new(true)}})
	if code, out := push(t, n, signed(t, mustYAML(t, evil), op)); code != 200 {
		t.Fatalf("push of a backtracking-prone but RE2-safe regex: %s", out)
	}
	path := "/" + strings.Repeat("a", 32<<10) + "b"
	start := time.Now()
	if code, body := get(t, n, path); code != 200 || body != "good" {
		t.Fatalf("GET of the adversarial path: %d %q", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the adversarial path took %v", d)
	}
}

// mustYAML writes cfg back as bundle source, so that it goes through the operator's path.
func mustYAML(t *testing.T, cfg *bundle.Config) []byte {
	t.Helper()
	s := cfg.Sites[0]
	r := s.Cache.Rules[0]
	return fmt.Appendf(nil, "serial: %d\nsites:\n  - name: %s\n    hosts: [\"*\"]\n    origins: [{url: %q}]\n    cache:\n      rules:\n        - path_regex: '%s'\n          bypass: true\n",
		cfg.Serial, s.Name, s.Origins[0].URL, r.PathRegex)
}
