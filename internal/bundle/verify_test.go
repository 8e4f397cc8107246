package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var sentinels = []error{ErrUnsigned, ErrUntrustedKey, ErrBadSignature, ErrTooFewSignatures, ErrTooLarge, ErrInvalid, ErrBadTrust}

// wantKinds fails unless err wraps exactly the sentinels in kinds.
func wantKinds(t *testing.T, err error, kinds ...error) {
	t.Helper()
	for _, s := range sentinels {
		want := false
		for _, k := range kinds {
			want = want || k == s
		}
		if got := errors.Is(err, s); got != want {
			t.Errorf("errors.Is(%q, %q) = %v, want %v", err, s, got, want)
		}
	}
}

// signRaw signs body bytes as they are, skipping Sign's checks, to build bundles that
// trusted operators signed but that must still be refused.
func signRaw(t *testing.T, body []byte, keys ...ed25519.PrivateKey) *Signed {
	t.Helper()
	s := &Signed{Body: body}
	for _, k := range keys {
		if err := s.sign(k); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestSignVerifyOneOfOne(t *testing.T) {
	a := newKey(t)
	s := sign(t, minimal, a)
	file, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("Decode(Encode(s)) = %+v, want %+v", got, s)
	}
	body, err := Verify(got, trust(t, 1, a))
	if err != nil {
		t.Fatal(err)
	}
	if body.Serial != 1 || !body.Created.Equal(created) || !reflect.DeepEqual(body.Config, mustParse(t, minimal)) {
		t.Errorf("body %+v", body)
	}
	sum := sha256.Sum256(s.Body)
	if s.Hash() != hex.EncodeToString(sum[:]) || len(s.Hash()) != 64 {
		t.Errorf("Hash %s", s.Hash())
	}
	if len(s.Signatures) != 1 || s.Signatures[0].KeyID != KeyID(pub(a)) {
		t.Errorf("signatures %+v", s.Signatures)
	}
}

func TestSignVerifyTwoOfThree(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	tr := trust(t, 2, a, b, c)

	// Co-signing: a signs, the file travels to b, b adds a signature.
	s := sign(t, string(exampleSource(t)), a)
	hash := s.Hash()
	if _, err := Verify(s, tr); !errors.Is(err, ErrTooFewSignatures) {
		t.Fatalf("one of two: %v", err)
	}
	file, _ := s.Encode()
	s2, err := Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.AddSignature(b); err != nil {
		t.Fatal(err)
	}
	if s2.Hash() != hash {
		t.Error("adding a signature changed the bundle id")
	}
	if _, err := Verify(s2, tr); err != nil {
		t.Fatalf("a+b: %v", err)
	}
	if err := s2.AddSignature(b); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Errorf("same key twice: %v", err)
	}

	// Both signers at hand.
	body, err := Verify(sign(t, string(exampleSource(t)), c, a), tr)
	if err != nil {
		t.Fatalf("c+a: %v", err)
	}
	if body.Serial != 42 {
		t.Errorf("serial %d", body.Serial)
	}

	// Enough valid signatures are not spoiled by junk appended in transit.
	junk := sign(t, minimal, a, b)
	stranger := newKey(t)
	junk.Signatures = append(junk.Signatures,
		Signature{KeyID: KeyID(pub(c)), Sig: make([]byte, 64)},
		Signature{KeyID: KeyID(pub(stranger)), Sig: ed25519.Sign(stranger, message(junk.Body))},
		junk.Signatures[0])
	if _, err := Verify(junk, tr); err != nil {
		t.Errorf("valid a+b with junk: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	a, b, stranger := newKey(t), newKey(t), newKey(t)
	one := trust(t, 1, a)
	two := trust(t, 2, a, b)
	good := sign(t, minimal, a)
	idA, idB, idS := KeyID(pub(a)), KeyID(pub(b)), KeyID(pub(stranger))

	// A body that passes no validation, and one with an invalid origin, both correctly
	// signed by a trusted key: signatures are not validation.
	ftp := mustParse(t, minimal)
	ftp.Sites[0].Origins[0].URL = "ftp://files.example"
	ftpBody, _ := NewBody(ftp, "", created).Canonical()
	zero := mustParse(t, minimal)
	zero.Serial = 0
	zeroBody, _ := (&Body{Created: created, Config: zero}).Canonical()
	goodBody := good.Body

	cases := []struct {
		name  string
		s     *Signed
		tr    Trust
		want  []string
		kinds []error
	}{
		{"unsigned", &Signed{Body: goodBody}, one, []string{"unsigned bundle"}, []error{ErrUnsigned}},
		{"untrusted key", sign(t, minimal, stranger), one,
			[]string{"signature 0: key " + idS + " is not trusted", "0 valid signatures of 1 required"}, []error{ErrUntrustedKey, ErrTooFewSignatures}},
		{"tampered body", func() *Signed {
			s := sign(t, minimal, a)
			s.Body = bytes.Replace(s.Body, []byte("www.example.com"), []byte("www.example.org"), 1)
			return s
		}(), one, []string{"signature 0 by key " + idA + ": invalid"}, []error{ErrBadSignature, ErrTooFewSignatures}},
		{"one byte flipped", func() *Signed {
			s := sign(t, minimal, a)
			s.Body = bytes.Clone(s.Body)
			s.Body[len(s.Body)/2] ^= 1
			return s
		}(), one, []string{"signature 0 by key " + idA + ": invalid"}, []error{ErrBadSignature, ErrTooFewSignatures}},
		{"signature replaced with another key's", func() *Signed {
			s := sign(t, minimal, a)
			s.Signatures[0].Sig = ed25519.Sign(b, message(s.Body))
			return s
		}(), one, []string{"signature 0 by key " + idA + ": invalid"}, []error{ErrBadSignature, ErrTooFewSignatures}},
		{"signature and key id replaced with a stranger's", func() *Signed {
			s := sign(t, minimal, a)
			s.Signatures[0] = Signature{KeyID: idS, Sig: ed25519.Sign(stranger, message(s.Body))}
			return s
		}(), one, []string{"key " + idS + " is not trusted"}, []error{ErrUntrustedKey, ErrTooFewSignatures}},
		{"no domain separation", func() *Signed {
			s := &Signed{Body: goodBody}
			s.Signatures = []Signature{{KeyID: idA, Sig: ed25519.Sign(a, goodBody)}}
			return s
		}(), one, []string{"signature 0 by key " + idA + ": invalid"}, []error{ErrBadSignature, ErrTooFewSignatures}},
		{"same key twice does not reach 2", func() *Signed {
			s := sign(t, minimal, a)
			s.Signatures = append(s.Signatures, s.Signatures[0])
			return s
		}(), two, []string{"signature 1: key " + idA + " signed more than once; counted once", "1 valid signature of 2 required"}, []error{ErrTooFewSignatures}},
		{"too few", sign(t, minimal, b), two, []string{"1 valid signature of 2 required"}, []error{ErrTooFewSignatures}},
		{"malformed key id", &Signed{Body: goodBody, Signatures: []Signature{{KeyID: "x\n", Sig: make([]byte, 64)}}}, one,
			[]string{"signature 0: malformed key id"}, []error{ErrUntrustedKey, ErrTooFewSignatures}},
		{"short signature", &Signed{Body: goodBody, Signatures: []Signature{{KeyID: idA, Sig: []byte{1}}}}, one,
			[]string{"signature 0 by key " + idA + ": invalid"}, []error{ErrBadSignature, ErrTooFewSignatures}},
		{"too many signatures", &Signed{Body: goodBody, Signatures: make([]Signature, MaxSignatures+1)}, one,
			[]string{"17 signatures exceed the limit of 16"}, []error{ErrTooLarge}},
		{"oversized body", &Signed{Body: make([]byte, MaxBodyBytes+1), Signatures: good.Signatures}, one,
			[]string{"body: too large"}, []error{ErrTooLarge}},
		{"nil bundle", nil, one, []string{"no bundle"}, []error{ErrInvalid}},
		{"valid signature over an invalid origin url", signRaw(t, ftpBody, a), one,
			[]string{`body: sites[0].origins[0].url: "ftp://files.example": scheme "ftp" not allowed`}, []error{ErrInvalid}},
		{"valid signature over serial 0", signRaw(t, zeroBody, a), one, []string{"body: serial: must be > 0"}, []error{ErrInvalid}},
		{"valid signature over a non-canonical body", signRaw(t, append(bytes.Clone(goodBody), ' '), a), one,
			[]string{"body: not in canonical form"}, []error{ErrInvalid}},
		{"valid signature over a key in another case", signRaw(t, bytes.Replace(goodBody, []byte(`"serial":1,"created"`), []byte(`"SERIAL":1,"created"`), 1), a), one,
			[]string{"body: not in canonical form"}, []error{ErrInvalid}},
		{"valid signature over an unknown field", signRaw(t, bytes.Replace(goodBody, []byte(`{"serial":1,`), []byte(`{"serial":1,"extra":1,`), 1), a), one,
			[]string{`body: json: unknown field "extra"`}, []error{ErrInvalid}},
		{"valid signature over garbage", signRaw(t, []byte("not json"), a), one, []string{"body: invalid character"}, []error{ErrInvalid}},
		{"serial differs from config", signRaw(t, bytes.Replace(goodBody, []byte(`{"serial":1,`), []byte(`{"serial":2,`), 1), a), one,
			[]string{"body: serial: 2 differs from config serial 1"}, []error{ErrInvalid}},
		{"trust requires none", good, Trust{Keys: one.Keys}, []string{"required 0 out of range 1..1"}, []error{ErrBadTrust}},
		{"trust requires more than it has", good, Trust{Keys: one.Keys, Required: 2}, []string{"required 2 out of range 1..1"}, []error{ErrBadTrust}},
		{"trust has no keys", good, Trust{Required: 1}, []string{"no operator keys"}, []error{ErrBadTrust}},
		{"trust files a key under another id", good, Trust{Keys: map[string]ed25519.PublicKey{idA: pub(b)}, Required: 1},
			[]string{"the key filed under " + idA + " has id " + idB}, []error{ErrBadTrust}},
		{"trust holds a short key", good, Trust{Keys: map[string]ed25519.PublicKey{idA: {1}}, Required: 1},
			[]string{"not an Ed25519 public key"}, []error{ErrBadTrust}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, err := Verify(c.s, c.tr)
			if body != nil {
				t.Error("returned a body with the error")
			}
			wantErr(t, err, c.want...)
			wantKinds(t, err, c.kinds...)
			if strings.Contains(err.Error(), "\n") && !strings.HasPrefix(err.Error(), "body: ") {
				t.Errorf("multi-line signature refusal: %q", err)
			}
		})
	}
}

func TestDecodeRefusals(t *testing.T) {
	a := newKey(t)
	file, err := sign(t, minimal, a).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want string
		kind error
	}{
		{"oversized file", bytes.Repeat([]byte(" "), MaxBundleBytes+1), "bundle: too large: 4194305 bytes exceed the limit of 4194304", ErrTooLarge},
		{"garbage", []byte("not a bundle"), "bundle: invalid character", ErrInvalid},
		{"empty", nil, "bundle: EOF", ErrInvalid},
		{"trailing data", append(bytes.Clone(file), []byte(" {}")...), "data after the JSON value", ErrInvalid},
		{"unknown field", bytes.Replace(file, []byte(`{"body"`), []byte(`{"x":1,"body"`), 1), `unknown field "x"`, ErrInvalid},
		{"no body", []byte(`{"signatures":[]}`), "body: empty", ErrInvalid},
		{"body not base64", []byte(`{"body":"!!","signatures":[]}`), "illegal base64", ErrInvalid},
		{"too many signatures", []byte(`{"body":"e30=","signatures":[` + strings.TrimSuffix(strings.Repeat(`{"key_id":"0123456789abcdef","sig":""},`, 17), ",") + `]}`),
			"17 signatures exceed the limit of 16", ErrTooLarge},
		{"bad key id", []byte(`{"body":"e30=","signatures":[{"key_id":"ABC","sig":""}]}`), "signatures[0].key_id: want 16 lower-case hex digits", ErrInvalid},
		{"short signature", []byte(`{"body":"e30=","signatures":[{"key_id":"0123456789abcdef","sig":"AAAA"}]}`), "signatures[0].sig: 3 bytes, want 64", ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Decode(c.in)
			if s != nil {
				t.Error("returned a bundle with the error")
			}
			wantErr(t, err, c.want)
			wantKinds(t, err, c.kind)
		})
	}
}

func TestSigningLimits(t *testing.T) {
	s := sign(t, minimal, newKey(t))
	if err := s.AddSignature(ed25519.PrivateKey{1}); err == nil {
		t.Error("AddSignature accepted a short key")
	}
	for len(s.Signatures) < MaxSignatures {
		if err := s.AddSignature(newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddSignature(newKey(t)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("signature %d: %v", MaxSignatures+1, err)
	}
	if _, err := s.Encode(); err != nil {
		t.Errorf("Encode with %d signatures: %v", MaxSignatures, err)
	}
	if _, err := Sign(NewBody(mustParse(t, minimal), "", created)); !errors.Is(err, ErrUnsigned) {
		t.Errorf("Sign with no key: %v", err)
	}
	a := newKey(t)
	if _, err := Sign(NewBody(mustParse(t, minimal), "", created), a, a); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Errorf("Sign with one key twice: %v", err)
	}
	bad := signRaw(t, []byte(`{"serial":0}`), a)
	if err := bad.AddSignature(newKey(t)); !errors.Is(err, ErrInvalid) {
		t.Errorf("co-signing an invalid body: %v", err)
	}
}

func TestNewTrust(t *testing.T) {
	a := newKey(t)
	if _, err := NewTrust(1, pub(a), pub(a)); !errors.Is(err, ErrBadTrust) {
		t.Errorf("duplicate key: %v", err)
	}
	if _, err := NewTrust(1, ed25519.PublicKey{1}); !errors.Is(err, ErrBadTrust) {
		t.Errorf("short key: %v", err)
	}
	if _, err := NewTrust(0, pub(a)); !errors.Is(err, ErrBadTrust) {
		t.Errorf("required 0: %v", err)
	}
	tr, err := NewTrust(1, pub(a))
	if err != nil || !tr.Keys[KeyID(pub(a))].Equal(pub(a)) {
		t.Errorf("NewTrust: %+v, %v", tr, err)
	}
}
