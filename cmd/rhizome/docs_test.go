package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
