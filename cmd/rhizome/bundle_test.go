package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rhizome/internal/node"
)

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("rhizome %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

func runFail(t *testing.T, want string, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code == 0 || !strings.Contains(errb.String(), want) {
		t.Fatalf("rhizome %s: exit %d, stderr %q; want a failure containing %q", strings.Join(args, " "), code, errb.String(), want)
	}
}

// TestOperatorWorkflow: keygen, validate, sign, co-sign, push to a node, status: the path
// an operator takes, through the CLI and the node's real admin socket.
func TestOperatorWorkflow(t *testing.T) {
	dir := t.TempDir()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	runOK(t, "keygen", "--out", alice)
	runOK(t, "keygen", "--out", bob)
	runOK(t, "keygen", "--out", filepath.Join(dir, "stranger"))
	runFail(t, "exists", "keygen", "--out", alice) // never overwrites a key
	pub := func(p string) string { b, _ := os.ReadFile(p + ".pub"); return strings.TrimSpace(string(b)) }

	src := filepath.Join(dir, "site.yaml")
	os.WriteFile(src, []byte(fmt.Sprintf("serial: 1\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins:\n      - url: %s\n", origin.URL)), 0o644)
	if out := runOK(t, "validate", src); !strings.Contains(out, "ok: serial 1, 1 sites") {
		t.Fatalf("validate: %q", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("serial: 1\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins:\n      - url: ftp://x\n"), 0o644)
	runFail(t, `sites[0].origins[0].url: "ftp://x": scheme "ftp" not allowed`, "validate", bad)
	runFail(t, `sites[0].origins[0].url`, "bundle", "sign", bad, "--key", alice+".key")

	runOK(t, "bundle", "sign", src, "--key", alice+".key")
	bundlePath := filepath.Join(dir, "site.bundle")

	boot, err := node.ParseBootstrap([]byte(fmt.Sprintf("name: n1\ndata_dir: %s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: false\ntrust:\n  required: 2\n  keys: [%s, %s]\n",
		filepath.Join(dir, "node"), pub(alice), pub(bob))))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(boot, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}()
	admin := n.Edge.AdminAddr.String()
	nodeDir := filepath.Join(dir, "node")
	runFail(t, "1 valid signature of 2 required", "push", "--admin", admin, "--data-dir", nodeDir, bundlePath)
	runOK(t, "bundle", "cosign", bundlePath, "--key", bob+".key")
	if out := runOK(t, "push", "--admin", admin, "--data-dir", nodeDir, bundlePath); !strings.Contains(out, "active: serial 1") {
		t.Fatalf("push: %q", out)
	}
	resp, err := http.Get("http://" + n.Edge.Addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from origin" {
		t.Fatalf("node serves %q", b)
	}
	runFail(t, "serial 1 is not above the active 1", "push", "--admin", admin, "--data-dir", nodeDir, bundlePath)
	if out := runOK(t, "status", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "active bundle: serial 1") || !strings.Contains(out, "refused") {
		t.Fatalf("status:\n%s", out)
	}
	out := runOK(t, "status", "--admin", admin, "--data-dir", nodeDir, "--json")
	for _, want := range []string{`"serial": 1`, `"refused"`, "not above the active"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}

	// Rollouts and kill switches through the CLI.
	if out := runOK(t, "rollout", "status", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "active on n1, wave 0") {
		t.Fatalf("rollout status:\n%s", out)
	}
	runFail(t, "--key: an operator key is required", "rollout", "halt", "--admin", admin, "--data-dir", nodeDir)
	runFail(t, `stage: "wafx"`, "killswitch", "wafx", "on", "--key", alice+".key", "--admin", admin, "--data-dir", nodeDir)
	runFail(t, "usage: rhizome killswitch", "killswitch", "waf", "maybe", "--key", alice+".key")
	runFail(t, "not a trusted operator key", "killswitch", "waf", "on", "--key", filepath.Join(dir, "stranger.key"), "--admin", admin, "--data-dir", nodeDir)
	if out := runOK(t, "killswitch", "waf", "on", "--site", "shop", "--key", alice+".key", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "bypassed") {
		t.Fatalf("killswitch: %s", out)
	}
	if out := runOK(t, "status", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "kill switch waf (shop): on") {
		t.Fatalf("status lacks the kill switch:\n%s", out)
	}
	if out := runOK(t, "rollout", "rollback", "--key", alice+".key", "--reason", "test", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "rolled back") {
		t.Fatalf("rollback: %s", out)
	}
	runFail(t, "usage: rhizome drain", "drain", "maybe", "--admin", admin, "--data-dir", nodeDir)
	runOK(t, "drain", "on", "--admin", admin, "--data-dir", nodeDir)
	if out := runOK(t, "status", "--admin", admin, "--data-dir", nodeDir); !strings.Contains(out, "draining: out of DNS answers") {
		t.Fatalf("status after drain on:\n%s", out)
	}
	runOK(t, "drain", "off", "--admin", admin, "--data-dir", nodeDir)
	if out := runOK(t, "status", "--admin", admin, "--data-dir", nodeDir); strings.Contains(out, "draining") {
		t.Fatalf("status after drain off:\n%s", out)
	}
}

// TestValidateRefusesBadYAMLAndNotesWaves: invalid YAML names its line; a bundle without
// waves is flagged, one with waves is summarised.
func TestValidateRefusesBadYAMLAndNotesWaves(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("serial: 1\nsites:\n  - name: shop\n   hosts: [x\n"), 0o644)
	runFail(t, "line", "validate", bad)
	plain := filepath.Join(dir, "plain.yaml")
	os.WriteFile(plain, []byte("serial: 1\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins: [{url: \"http://127.0.0.1:9\"}]\n"), 0o644)
	if out := runOK(t, "validate", plain); !strings.Contains(out, "goes to every node at once") {
		t.Fatalf("validate without waves: %s", out)
	}
	staged := filepath.Join(dir, "staged.yaml")
	os.WriteFile(staged, []byte("serial: 1\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins: [{url: \"http://127.0.0.1:9\"}]\nrollout:\n  waves: [{nodes: 1, bake: 5m}, {percent: 100}]\n"), 0o644)
	if out := runOK(t, "validate", staged); !strings.Contains(out, "rollout: 1 node(s) bake 5m0s, then 100%") {
		t.Fatalf("validate with waves: %s", out)
	}
	wrong := filepath.Join(dir, "wrong.yaml")
	os.WriteFile(wrong, []byte("serial: 1\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins: [{url: \"http://127.0.0.1:9\"}]\nrollout:\n  waves: [{nodes: 1, percent: 5}, {percent: 50}]\n"), 0o644)
	runFail(t, "rollout.waves[0]: set one of nodes or percent", "validate", wrong)
}
