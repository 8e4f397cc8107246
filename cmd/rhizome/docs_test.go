package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"rhizome/internal/bundle"
	"rhizome/internal/node"
)

// TestDocumentedCommandsAreValid runs every `rhizome proxy` command line shown in the README
// and docs/ through `rhizome proxy --check`, so that the documentation cannot drift from
// the flags.
func TestDocumentedCommandsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	line := regexp.MustCompile(`(?:go run \./cmd/rhizome|^rhizome) proxy( [^#|]*?)?\s*(?:#.*)?$`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Join shell continuation lines first.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for _, l := range strings.Split(text, "\n") {
			l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "$ "))
			m := line.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			args := append([]string{"proxy"}, strings.Fields(m[1])...)
			if strings.Contains(l, "ftp://") {
				continue // the documented example of a refused flag
			}
			found++
			var out, errb bytes.Buffer
			if code := run(append(args, "--check"), &out, &errb); code != 0 {
				t.Errorf("%s: %q: exit %d: %s", filepath.Base(f), l, code, errb.String())
			}
		}
	}
	t.Logf("%d documented command lines checked", found)
	if found < 5 {
		t.Fatalf("found only %d documented proxy command lines; the pattern is stale", found)
	}
}

// TestDocumentedYAMLIsValid parses the YAML examples of docs/bundles.md: bundle sources with
// the bundle parser, bootstrap files with the node's (placeholder keys replaced by real ones).
func TestDocumentedYAMLIsValid(t *testing.T) {
	var b []byte
	for _, f := range []string{"../../docs/bundles.md", "../../docs/rollout.md", "../../docs/dns.md", "../../docs/security.md"} {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d yaml blocks", len(blocks))
	}
	pub, _, _ := bundle.GenerateKey()
	pub2, _, _ := bundle.GenerateKey()
	for i, m := range blocks {
		src := m[1]
		switch {
		case strings.HasPrefix(src, "serial:"):
			if _, err := bundle.ParseSource([]byte(src)); err != nil {
				t.Errorf("block %d (bundle source): %v", i, err)
			}
		case strings.HasPrefix(src, "name:"):
			src = strings.Replace(src, "ed25519:...alice...", bundle.FormatPublicKey(pub), 1)
			src = strings.Replace(src, "ed25519:...bob...", bundle.FormatPublicKey(pub2), 1)
			if _, err := node.ParseBootstrap([]byte(src)); err != nil {
				t.Errorf("block %d (bootstrap): %v", i, err)
			}
		default:
			t.Errorf("block %d: neither a bundle source nor a bootstrap file", i)
		}
	}
}
