package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
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

	"rhizome/internal/bundle"
)

type keypair struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t *testing.T) keypair {
	t.Helper()
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return keypair{pub, priv}
}

func bootstrap(t *testing.T, dir string, required int, keys ...keypair) *Bootstrap {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: test-1\nregion: eu-west\nprovider: local\ndata_dir: %s\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\naccess_log: false\ntrust:\n  required: %d\n  keys:\n", dir, required)
	for _, k := range keys {
		fmt.Fprintf(&b, "    - %s\n", bundle.FormatPublicKey(k.pub))
	}
	boot, err := ParseBootstrap([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return boot
}

func source(serial int, origin string) []byte {
	return []byte(fmt.Sprintf("serial: %d\nsites:\n  - name: shop\n    hosts: [\"*\"]\n    origins:\n      - url: %s\n", serial, origin))
}

func signed(t *testing.T, src []byte, keys ...keypair) []byte {
	t.Helper()
	cfg, err := bundle.ParseSource(src)
	if err != nil {
		t.Fatal(err)
	}
	var privs []ed25519.PrivateKey
	for _, k := range keys {
		privs = append(privs, k.priv)
	}
	s, err := bundle.Sign(&bundle.Body{Serial: cfg.Serial, Created: time.Now().UTC(), Config: cfg}, privs...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, n *Node, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.Edge.Addr.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func push(t *testing.T, n *Node, b []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.Edge.AdminAddr.String()+"/v1/bundle", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+n.Edge.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func start(t *testing.T, boot *Bootstrap) *Node {
	t.Helper()
	n, err := Start(boot, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func stop(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.Shutdown(ctx)
}

func origin(t *testing.T, body string) string {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, body)
	}))
	t.Cleanup(o.Close)
	return o.URL
}

func TestPushAndServe(t *testing.T) {
	op := newKey(t)
	dir := t.TempDir()
	n := start(t, bootstrap(t, dir, 1, op))
	defer stop(t, n)
	if code, _ := get(t, n, "/"); code != http.StatusMisdirectedRequest {
		t.Fatalf("before any bundle: %d, want 421", code)
	}
	code, out := push(t, n, signed(t, source(1, origin(t, "v1")), op))
	if code != 200 {
		t.Fatalf("push: %d %s", code, out)
	}
	if code, body := get(t, n, "/"); code != 200 || body != "v1" {
		t.Fatalf("after push: %d %q", code, body)
	}
	if st := n.State(); st.Active == nil || st.Active.Serial != 1 || st.Active.Signers[0] != bundle.KeyID(op.pub) {
		t.Fatalf("state %+v", st)
	}
}

// TestAdversarialBundles: every bad bundle is refused with its reason while the node keeps
// serving the good one.
func TestAdversarialBundles(t *testing.T) {
	op, op2, stranger := newKey(t), newKey(t), newKey(t)
	dir := t.TempDir()
	n := start(t, bootstrap(t, dir, 1, op, op2))
	defer stop(t, n)
	good := origin(t, "good")
	if code, out := push(t, n, signed(t, source(5, good), op)); code != 200 {
		t.Fatalf("good push: %s", out)
	}
	tampered := signed(t, source(6, good), op)
	tampered = bytes.Replace(tampered, []byte(`"body":"`), []byte(`"body":"A`), 1)
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"unknown signer", "not trusted", signed(t, source(6, good), stranger)},
		{"replayed older serial", "serial 4 is not above the active 5", signed(t, source(4, good), op)},
		{"same serial again", "serial 5 is not above the active 5", signed(t, source(5, good), op)},
		{"tampered body", "", tampered},
		{"garbage", "", []byte("not a bundle")},
		{"oversized", "", bytes.Repeat([]byte("x"), bundle.MaxBundleBytes+1)},
		{"unsigned", "unsigned", func() []byte {
			var s bundle.Signed
			s.Body = []byte(`{"serial":9}`)
			b, _ := s.Encode()
			return b
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := push(t, n, c.b)
			if code == 200 || !strings.Contains(out, c.want) {
				t.Fatalf("push: %d %s; want a refusal containing %q", code, out, c.want)
			}
			if code, body := get(t, n, "/"); code != 200 || body != "good" {
				t.Fatalf("node stopped serving the good bundle: %d %q", code, body)
			}
		})
	}
	if st := n.State(); len(st.Refused) != len(cases) || st.Active.Serial != 5 {
		t.Fatalf("state after refusals: active %+v, %d refusals", st.Active, len(st.Refused))
	}
}

func TestTwoOfTwoRequired(t *testing.T) {
	a, b := newKey(t), newKey(t)
	n := start(t, bootstrap(t, t.TempDir(), 2, a, b))
	defer stop(t, n)
	src := source(1, origin(t, "x"))
	if code, out := push(t, n, signed(t, src, a)); code == 200 || !strings.Contains(out, "of 2 required") {
		t.Fatalf("one signature of two: %d %s", code, out)
	}
	if code, out := push(t, n, signed(t, src, a, b)); code != 200 {
		t.Fatalf("two signatures: %d %s", code, out)
	}
}

// TestRestartServesLastKnownGood: a node restarted with nobody to talk to serves the bundle
// it had; a damaged active bundle falls back to the previous one.
func TestRestartServesLastKnownGood(t *testing.T) {
	op := newKey(t)
	dir := t.TempDir()
	boot := bootstrap(t, dir, 1, op)
	n := start(t, boot)
	push(t, n, signed(t, source(1, origin(t, "one")), op))
	push(t, n, signed(t, source(2, origin(t, "two")), op))
	stop(t, n)

	n = start(t, bootstrap(t, dir, 1, op))
	if code, body := get(t, n, "/"); code != 200 || body != "two" {
		t.Fatalf("after restart: %d %q", code, body)
	}
	stop(t, n)

	if err := os.WriteFile(filepath.Join(dir, bundleDir, activeFile), []byte("{corrupt"), 0o600); err != nil {
		t.Fatal(err)
	}
	n = start(t, bootstrap(t, dir, 1, op))
	defer stop(t, n)
	if code, body := get(t, n, "/"); code != 200 || body != "one" {
		t.Fatalf("with a damaged active bundle: %d %q, want the previous one", code, body)
	}
	if st := n.State(); len(st.Refused) != 1 {
		t.Fatalf("the damaged bundle should be reported: %+v", st.Refused)
	}
	// The next bundle must not push the damaged file over the good previous one.
	if code, out := push(t, n, signed(t, source(3, origin(t, "three")), op)); code != 200 {
		t.Fatalf("push 3: %s", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, bundleDir, previousFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Decode(b); err != nil {
		t.Fatalf("previous.bundle was overwritten by the damaged one: %v", err)
	}
}

func TestBootstrapErrors(t *testing.T) {
	op := newKey(t)
	pub := bundle.FormatPublicKey(op.pub)
	for _, c := range []struct{ yaml, want string }{
		{"name: a\n", "data_dir: required"},
		{"name: a\ndata_dir: /x\n", "trust.keys: at least one"},
		{"name: a b\ndata_dir: /x\ntrust: {keys: [" + pub + "]}\n", "name:"},
		{"name: a\ndata_dir: /x\ntrust: {keys: [ed25519:AAAA]}\n", "trust.keys[0]"},
		{"name: a\ndata_dir: /x\ntrust: {keys: [" + pub + "], required: 2}\n", "trust.required: 2 out of range 1..1"},
		{"name: a\ndata_dir: /x\ntrsut: {}\n", "field trsut not found"},
		{"name: a\ndata_dir: /x\ncache: {memory: lots}\ntrust: {keys: [" + pub + "]}\n", "cache.memory"},
		{"name: a\ndata_dir: /x\nregion: " + strings.Repeat("r", 120) + "\nmesh: {bind: 127.0.0.1:1, fetch: 127.0.0.1:2}\ntrust: {keys: [" + pub + "]}\n", "name, region, provider, mesh.fetch_url"},
		{"name: a\ndata_dir: /x\nkey: /nonexistent/a.key\ntrust: {keys: [" + pub + "]}\n", ""},
	} {
		if c.want == "" {
			if _, err := ParseBootstrap([]byte(c.yaml)); err != nil {
				t.Errorf("%q: %v", c.yaml, err)
			}
			continue
		}
		_, err := ParseBootstrap([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.yaml, err, c.want)
		}
	}
	_ = errors.New
}

func formatPub(k keypair) string { return bundle.FormatPublicKey(k.pub) }
