package botauth

import (
	"bufio"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// RFC 9421 Appendix B.2: the test-request message.
const testRequest = "POST /foo?param=Value&Pet=dog HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:55 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\r\n" +
	"Content-Length: 18\r\n" +
	"\r\n" +
	`{"hello": "world"}`

// RFC 9421 Appendix B.2: the test-response message.
const testResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:56 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Digest: sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\r\n" +
	"Content-Length: 23\r\n" +
	"\r\n" +
	`{"message": "good dog"}`

// RFC 9421 Appendix B.1.4: test-key-ed25519.
const (
	testKeyEd25519Public = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----`
	testKeyEd25519Private = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----`
)

// RFC 9421 Appendix B.2.6: the signature of test-request with test-key-ed25519
// (unwrapped from the RFC 8792 line folding).
const b26Signature = "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="

func testRequestB2(t testing.TB) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(testRequest)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testResponseB2(t testing.TB) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(testResponse)), testRequestB2(t))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func testKeys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pb, _ := pem.Decode([]byte(testKeyEd25519Public))
	pub, err := x509.ParsePKIXPublicKey(pb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode([]byte(testKeyEd25519Private))
	priv, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(ed25519.PublicKey), priv.(ed25519.PrivateKey)
}

var rfcCreated = time.Unix(1618884473, 0)

// TestRFC9421SignatureBases compares signature bases with RFC 9421 Appendix
// B.2.1–B.2.6 byte for byte (the RFC's RFC 8792 line folding undone by hand).
func TestRFC9421SignatureBases(t *testing.T) {
	tests := []struct {
		section    string
		response   bool
		components []string
		params     Params
		want       string
	}{
		{
			section: "B.2.1 minimal signature",
			params:  Params{Created: rfcCreated, KeyID: "test-key-rsa-pss", Nonce: "b3k2pp5k7z-50gnwp.yemd"},
			want:    `"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"`,
		},
		{
			section:    "B.2.2 selective covered components",
			components: []string{"@authority", "content-digest", `@query-param;name="Pet"`},
			params:     Params{Created: rfcCreated, KeyID: "test-key-rsa-pss", Tag: "header-example"},
			want: `"@authority": example.com
"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"@query-param";name="Pet": dog
"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example"`,
		},
		{
			section:    "B.2.3 full coverage",
			components: []string{"date", "@method", "@path", "@query", "@authority", "content-type", "content-digest", "content-length"},
			params:     Params{Created: rfcCreated, KeyID: "test-key-rsa-pss"},
			want: `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@query": ?param=Value&Pet=dog
"@authority": example.com
"content-type": application/json
"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"`,
		},
		{
			section:    "B.2.4 signing a response",
			response:   true,
			components: []string{"@status", "content-type", "content-digest", "content-length"},
			params:     Params{Created: rfcCreated, KeyID: "test-key-ecc-p256"},
			want: `"@status": 200
"content-type": application/json
"content-digest": sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:
"content-length": 23
"@signature-params": ("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256"`,
		},
		{
			section:    "B.2.5 hmac-sha256",
			components: []string{"date", "@authority", "content-type"},
			params:     Params{Created: rfcCreated, KeyID: "test-shared-secret"},
			want: `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@authority": example.com
"content-type": application/json
"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`,
		},
		{
			section:    "B.2.6 ed25519",
			components: []string{"date", "@method", "@path", "@authority", "content-type", "content-length"},
			params:     Params{Created: rfcCreated, KeyID: "test-key-ed25519"},
			want: `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@authority": example.com
"content-type": application/json
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.section, func(t *testing.T) {
			var got []byte
			var err error
			if tt.response {
				got, err = ResponseSignatureBase(testResponseB2(t), tt.components, tt.params)
			} else {
				got, err = SignatureBase(testRequestB2(t), tt.components, tt.params)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("signature base\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

// TestRFC9421B26 verifies the RFC's published Ed25519 signature and checks that
// Sign reproduces it exactly (Ed25519 is deterministic).
func TestRFC9421B26(t *testing.T) {
	pub, priv := testKeys(t)
	components := []string{"date", "@method", "@path", "@authority", "content-type", "content-length"}
	p := Params{Created: rfcCreated, KeyID: "test-key-ed25519"}

	base, err := SignatureBase(testRequestB2(t), components, p)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(b26Signature)
	if !ed25519.Verify(pub, base, sig) {
		t.Fatal("RFC signature does not verify over our signature base")
	}

	r := testRequestB2(t)
	if err := Sign(r, "sig-b26", components, p, priv); err != nil {
		t.Fatal(err)
	}
	// RFC 9421 B.2.6 Signature-Input and Signature, unwrapped.
	wantInput := `sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
	if got := r.Header.Get("Signature-Input"); got != wantInput {
		t.Errorf("Signature-Input\n got: %s\nwant: %s", got, wantInput)
	}
	if got, want := r.Header.Get("Signature"), "sig-b26=:"+b26Signature+":"; got != want {
		t.Errorf("Signature\n got: %s\nwant: %s", got, want)
	}

	// And the RFC's own headers verify through VerifyRequestLabel.
	r = testRequestB2(t)
	r.Header.Set("Signature-Input", wantInput)
	r.Header.Set("Signature", "sig-b26=:"+b26Signature+":")
	lookup := func(keyid string) (ed25519.PublicKey, error) {
		if keyid == "test-key-ed25519" {
			return pub, nil
		}
		return nil, ErrUnknownKey
	}
	s, err := VerifyRequestLabel(r, "sig-b26", lookup, rfcCreated)
	if err != nil {
		t.Fatal(err)
	}
	if s.Label != "sig-b26" || !s.Covers("content-length") || s.Covers("content-digest") {
		t.Errorf("unexpected %+v", s)
	}
	if _, err := VerifyRequest(r, "", lookup, rfcCreated); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRequest(r, "web-bot-auth", lookup, rfcCreated); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("wrong tag: %v", err)
	}
}

// TestThumbprint checks RFC 8037 Appendix A.3: the thumbprint of the Appendix
// A.2 public key.
func TestThumbprint(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got, want := Thumbprint(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
	// RFC 9421's test-key-ed25519: the keyid Web Bot Auth examples sign with
	// (the directory draft's example "kid" for this key is not its thumbprint).
	pub, _ := testKeys(t)
	if got, want := Thumbprint(pub), "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"; got != want {
		t.Errorf("Thumbprint(test-key-ed25519) = %s, want %s", got, want)
	}
	if Thumbprint(x[:5]) != "" {
		t.Error("short key must give an empty thumbprint")
	}
}
