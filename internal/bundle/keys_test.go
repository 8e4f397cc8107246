package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	pubKey, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ps := FormatPublicKey(pubKey)
	if !strings.HasPrefix(ps, "ed25519:") || len(ps) != len("ed25519:")+44 {
		t.Errorf("public key text %q", ps)
	}
	gotPub, err := ParsePublicKey(" " + ps + "\n")
	if err != nil || !gotPub.Equal(pubKey) {
		t.Fatalf("ParsePublicKey(%q) = %x, %v", ps, gotPub, err)
	}
	ks := FormatPrivateKey(priv)
	if !strings.HasPrefix(ks, "ed25519-private:") {
		t.Errorf("private key text %q", ks)
	}
	gotPriv, err := ParsePrivateKey(ks)
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	id := KeyID(pubKey)
	if len(id) != 16 || !validKeyID(id) || KeyID(gotPub) != id {
		t.Errorf("KeyID %q", id)
	}
	if FormatPrivateKey(ed25519.PrivateKey{1, 2}) != "" {
		t.Error("FormatPrivateKey of a short key")
	}
}

// TestKeyIDVector pins KeyID for a fixed key (RFC 8032 test 1 public key), so that ids in
// operators' files and logs never change meaning.
func TestKeyIDVector(t *testing.T) {
	k, err := ParsePublicKey("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	if err != nil {
		t.Fatal(err)
	}
	// sha256(d75a9801...f707511a) = 21fe31dfa154a261...
	if got := KeyID(k); got != "21fe31dfa154a261" {
		t.Errorf("KeyID = %s", got)
	}
}

func TestParseKeysBad(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	key32 := bytes.Repeat([]byte{7}, 32)
	goodPub := "ed25519:" + b64(key32)
	goodPriv := "ed25519-private:" + b64(key32)
	for _, c := range []struct {
		name, in, want string
		private        bool
	}{
		{"public: empty", "", "want the prefix", false},
		{"public: wrong prefix", "ssh-ed25519:" + b64(key32), "want the prefix", false},
		{"public: no prefix", b64(key32), "want the prefix", false},
		{"public: upper-case prefix", "ED25519:" + b64(key32), "want the prefix", false},
		{"public: a private key", goodPriv, "this is a private key", false},
		{"public: short", "ed25519:" + b64(key32[:31]), "31 bytes, want 32", false},
		{"public: long", "ed25519:" + b64(append(key32, 1)), "33 bytes, want 32", false},
		{"public: bad base64", "ed25519:!!!!", "bad base64", false},
		{"public: url base64", "ed25519:" + strings.Repeat("_", 43) + "=", "bad base64", false},
		{"public: no padding", strings.TrimSuffix(goodPub, "="), "bad base64", false},
		{"public: padding bits set", goodPub[:len(goodPub)-2] + "x=", "bad base64", false},
		{"public: inner space", goodPub[:12] + " " + goodPub[12:], "bad base64", false},
		{"private: empty", "", "want the prefix", true},
		{"private: a public key", goodPub, "this is a public key", true},
		{"private: short seed", "ed25519-private:" + b64(key32[:16]), "16 bytes, want a 32-byte seed", true},
		{"private: full 64-byte key", "ed25519-private:" + b64(ed25519.NewKeyFromSeed(key32)), "64 bytes", true},
		{"private: bad base64", "ed25519-private:%%%", "bad base64", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.private {
				var k ed25519.PrivateKey
				k, err = ParsePrivateKey(c.in)
				if k != nil {
					t.Error("returned a key")
				}
				if err != nil && len(c.in) > 20 && strings.Contains(err.Error(), c.in[16:]) {
					t.Error("error quotes the secret")
				}
			} else {
				var k ed25519.PublicKey
				k, err = ParsePublicKey(c.in)
				if k != nil {
					t.Error("returned a key")
				}
			}
			wantErr(t, err, c.want)
		})
	}
	// The inputs above differ from valid ones only where the case says.
	if _, err := ParsePublicKey(goodPub); err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKey(goodPriv); err != nil {
		t.Fatal(err)
	}
}
