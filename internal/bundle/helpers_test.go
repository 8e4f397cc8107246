package bundle

import (
	"crypto/ed25519"
	"os"
	"strings"
	"testing"
	"time"
)

// created is the fixed creation time of test bodies, so that their bytes are reproducible.
var created = time.Date(2026, 11, 18, 11, 20, 0, 0, time.UTC)

// minimal is the smallest source that validates.
const minimal = `serial: 1
sites:
  - name: www
    hosts: [www.example.com]
    origins: [{url: "http://10.0.0.1:8000"}]
`

func exampleSource(t testing.TB) []byte {
	t.Helper()
	src, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func mustParse(t testing.TB, src string) *Config {
	t.Helper()
	c, err := ParseSource([]byte(src))
	if err != nil {
		t.Fatalf("ParseSource: %v", err)
	}
	return c
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func trust(t testing.TB, required int, keys ...ed25519.PrivateKey) Trust {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, k := range keys {
		pubs = append(pubs, pub(k))
	}
	tr, err := NewTrust(required, pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func sign(t testing.TB, src string, keys ...ed25519.PrivateKey) *Signed {
	t.Helper()
	s, err := Sign(NewBody(mustParse(t, src), "", created), keys...)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return s
}

// wantErr fails unless err is non-nil and its text contains every one of want.
func wantErr(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q\ndoes not contain %q", err, w)
		}
	}
}
