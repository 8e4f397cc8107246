package control

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"rhizome/internal/bundle"
)

// Fixed clock and bundle hashes used across the tests.
var (
	testNow = time.UnixMilli(1_700_000_000_000)
	hashA   = strings.Repeat("a1", 32)
	hashB   = strings.Repeat("b2", 32)
)

// at returns a record time n seconds after the test epoch (well before testNow).
func at(n int) int64 { return testNow.Add(-time.Hour).UnixMilli() + int64(n)*1000 }

// fixture holds an operator key the verifier trusts, a stranger's key, and two node keys.
type fixture struct {
	opPub    ed25519.PublicKey
	op       ed25519.PrivateKey
	other    ed25519.PrivateKey // not trusted
	nodePub  ed25519.PublicKey
	node     ed25519.PrivateKey // "edge-fra-01"'s key
	node2Pub ed25519.PublicKey
	node2    ed25519.PrivateKey // "edge-ams-02"'s key
	trust    bundle.Trust
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{}
	key := func() (ed25519.PublicKey, ed25519.PrivateKey) {
		pub, priv, err := bundle.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return pub, priv
	}
	f.opPub, f.op = key()
	_, f.other = key()
	f.nodePub, f.node = key()
	f.node2Pub, f.node2 = key()
	trust, err := bundle.NewTrust(1, f.opPub)
	if err != nil {
		t.Fatal(err)
	}
	f.trust = trust
	return f
}

// verifier trusts the operator key and knows both nodes' published keys.
func (f *fixture) verifier() Verifier {
	return Verifier{
		Trust: f.trust,
		NodeKey: func(name string) (ed25519.PublicKey, bool) {
			switch name {
			case "edge-fra-01":
				return f.nodePub, true
			case "edge-ams-02":
				return f.node2Pub, true
			}
			return nil, false
		},
		Now: func() time.Time { return testNow },
	}
}

// keyFor returns the key that signs a record of r's kind in the fixture: the node's own key
// for unhealthy reports, the operator key otherwise.
func (f *fixture) keyFor(r Record) ed25519.PrivateKey {
	if r.Kind == KindUnhealthy {
		if r.Node == "edge-ams-02" {
			return f.node2
		}
		return f.node
	}
	return f.op
}

// sign signs r with the fixture key for its kind and fails the test on error.
func (f *fixture) sign(t testing.TB, r Record) Signed {
	t.Helper()
	s, err := Sign(r, f.keyFor(r))
	if err != nil {
		t.Fatalf("Sign(%+v): %v", r, err)
	}
	return s
}

// add signs r and adds it to c, failing the test on error.
func (f *fixture) add(t testing.TB, c *Set, r Record) Signed {
	t.Helper()
	s := f.sign(t, r)
	if _, _, err := c.Add(f.verifier(), s); err != nil {
		t.Fatalf("Add(%+v): %v", r, err)
	}
	return s
}

// signBody signs body as Sign would (with the control domain), whatever body holds.
func signBody(key ed25519.PrivateKey, body []byte) Signed {
	return Signed{Body: body, Sig: ed25519.Sign(key, append([]byte("rhizome-control-v1\n"), body...))}
}

// handMade marshals r as it stands (no defaults filled, no checks) and signs it with key.
// KeyID and Pub are set for key unless already set.
func handMade(t testing.TB, r Record, key ed25519.PrivateKey) Signed {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	if r.KeyID == "" {
		r.KeyID = bundle.KeyID(pub)
	}
	if r.Kind == KindUnhealthy && r.Pub == "" {
		r.Pub = bundle.FormatPublicKey(pub)
	}
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return signBody(key, body)
}

// Sample records of each kind, dated at(1).
func halt(b string, n int) Record {
	return Record{Kind: KindHalt, Bundle: b, Serial: 7, Reason: "errors up", At: at(n)}
}
func resume(b string, n int) Record { return Record{Kind: KindResume, Bundle: b, Serial: 7, At: at(n)} }
func rollback(b string, n int) Record {
	return Record{Kind: KindRollback, Bundle: b, Serial: 7, Reason: "bad cache rule", At: at(n)}
}
func unhealthy(b, node string, n int) Record {
	return Record{Kind: KindUnhealthy, Bundle: b, Serial: 7, Node: node, Reason: "5xx rate 12%", At: at(n)}
}
func kill(stage, site string, on bool, n int) Record {
	return Record{Kind: KindKillSwitch, Stage: stage, Site: site, On: on, At: at(n)}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
