package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

// fixedKey returns a test-only operator key from a fixed seed, so that fuzz seeds and
// their signatures are the same on every run.
func fixedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// FuzzParseSource: ParseSource never panics, refuses with ErrInvalid or ErrTooLarge, and
// whatever it accepts can be signed and is accepted by a node: one validation path.
func FuzzParseSource(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(exampleSource(f))
	f.Add([]byte(bomb()))
	f.Add([]byte(mergeBomb()))
	f.Add([]byte("serial: 1\nsites:\n  - &a {<<: *a}\n"))
	f.Add([]byte("serial: 1\nsites: &a [*a]\n"))
	f.Add([]byte(minimal + "---\nserial: 2\n"))
	f.Add([]byte(minimal + "    timeouts: {connect: 2 seconds}\n"))
	f.Add([]byte(minimal + "    retry: {budget_percent: .inf, attempts: 0x3}\n"))
	f.Add([]byte(`{serial: 3, sites: [{name: a, hosts: [a.example], origins: [{url: "http://o.example"}]}]}`))
	key := fixedKey(1)
	tr, err := NewTrust(1, pub(key))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := ParseSource(src)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		b := NewBody(c, "", created)
		raw, err := b.Canonical()
		if err != nil {
			t.Fatalf("Canonical of an accepted config: %v", err)
		}
		s, err := Sign(b, key)
		if err != nil {
			t.Fatalf("Sign refused an accepted config: %v\n%s", err, raw)
		}
		if !bytes.Equal(s.Body, raw) {
			t.Fatal("Sign did not sign the canonical bytes")
		}
		file, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Verify(d, tr)
		if err != nil {
			t.Fatalf("Verify refused a signed, accepted config: %v", err)
		}
		again, err := got.Canonical()
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("verified body does not re-encode to the signed bytes: %v", err)
		}
	})
}

// FuzzDecodeVerify: Decode and Verify never panic on arbitrary bytes, and Verify accepts
// only bodies that the trusted keys really signed. The fuzzer cannot forge Ed25519, so any
// accepted body must be one of the few the seeds were built from.
func FuzzDecodeVerify(f *testing.F) {
	a, b, stranger := fixedKey(1), fixedKey(2), fixedKey(3)
	one, err := NewTrust(1, pub(a))
	if err != nil {
		f.Fatal(err)
	}
	two, err := NewTrust(2, pub(a), pub(b))
	if err != nil {
		f.Fatal(err)
	}
	signedByA := map[string]bool{}  // bodies a signed: the only ones `one` may accept
	signedByAB := map[string]bool{} // bodies a and b both signed: the only ones `two` may accept
	add := func(s *Signed, keys ...ed25519.PrivateKey) {
		for _, k := range keys {
			if err := s.sign(k); err != nil {
				f.Fatal(err)
			}
		}
		file, err := s.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(file)
	}
	for _, src := range []string{minimal, string(exampleSource(f))} {
		c, err := ParseSource([]byte(src))
		if err != nil {
			f.Fatal(err)
		}
		body, err := NewBody(c, "", created).Canonical()
		if err != nil {
			f.Fatal(err)
		}
		signedByA[string(body)] = true
		signedByAB[string(body)] = true
		add(&Signed{Body: body}, a)
		add(&Signed{Body: body}, a, b)
		add(&Signed{Body: body}, stranger)
		add(&Signed{Body: body})
	}
	// A body with an invalid origin, validly signed: must be refused all the same.
	ftp, err := ParseSource([]byte(minimal))
	if err != nil {
		f.Fatal(err)
	}
	ftp.Sites[0].Origins[0].URL = "ftp://x"
	body, err := NewBody(ftp, "", created).Canonical()
	if err != nil {
		f.Fatal(err)
	}
	signedByA[string(body)] = true
	add(&Signed{Body: body}, a)
	f.Add([]byte("not a bundle"))
	f.Add([]byte(`{"body":"e30=","signatures":[{"key_id":"0123456789abcdef","sig":""}]}`))

	f.Fuzz(func(t *testing.T, file []byte) {
		s, err := Decode(file)
		if err != nil {
			if s != nil {
				t.Fatal("bundle returned with an error")
			}
			return
		}
		for _, c := range []struct {
			tr     Trust
			signed map[string]bool
		}{{one, signedByA}, {two, signedByAB}} {
			got, err := Verify(s, c.tr)
			if err != nil {
				if got != nil {
					t.Fatal("body returned with an error")
				}
				if strings.Contains(err.Error(), "internal error") {
					t.Fatalf("Verify panicked: %v", err)
				}
				continue
			}
			if !c.signed[string(s.Body)] {
				t.Fatalf("Verify (%d of %d) accepted a body the trusted keys never signed:\n%s", c.tr.Required, len(c.tr.Keys), s.Body)
			}
		}
	})
}
