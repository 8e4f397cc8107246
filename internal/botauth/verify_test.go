package botauth

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1750000000, 0)

// newKey derives a deterministic key so failures reproduce.
func newKey(seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed%26)), 32)))
	return priv.Public().(ed25519.PublicKey), priv
}

func lookupFor(pub ed25519.PublicKey) func(string) (ed25519.PublicKey, error) {
	id := Thumbprint(pub)
	return func(keyid string) (ed25519.PublicKey, error) {
		if keyid == id {
			return pub, nil
		}
		return nil, ErrUnknownKey
	}
}

var crawlerComponents = []string{"@authority", "signature-agent", "@method", "@path", "crawler-exact-price"}

func signedRequest(t testing.TB, priv ed25519.PrivateKey) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://Example.COM:443/articles/1?x=1", nil)
	r.Header.Set("Signature-Agent", `"https://crawler.example"`)
	r.Header.Set("Crawler-Exact-Price", "USD 0.01")
	r.Header.Set("User-Agent", "ExampleBot/1.0")
	p := Params{Created: t0, Expires: t0.Add(time.Minute), KeyID: Thumbprint(priv.Public().(ed25519.PublicKey)), Alg: "ed25519", Nonce: "n-1", Tag: Tag}
	if err := Sign(r, "sig1", crawlerComponents, p, priv); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	pub, priv := newKey(1)
	r := signedRequest(t, priv)
	s, err := VerifyRequest(r, Tag, lookupFor(pub), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if s.Label != "sig1" || s.Params.Nonce != "n-1" || !s.Params.Expires.Equal(t0.Add(time.Minute)) {
		t.Errorf("unexpected %+v", s)
	}
	for _, c := range crawlerComponents {
		if !s.Covers(c) {
			t.Errorf("Covers(%q) = false", c)
		}
	}
	if s.Covers("user-agent") || s.Covers(`signature-agent;key="sig1"`) {
		t.Error("covers too much")
	}
	// Uncovered headers may change.
	r.Header.Set("User-Agent", "Other")
	r.Header.Set("X-Added", "1")
	if _, err := VerifyRequest(r, Tag, lookupFor(pub), t0); err != nil {
		t.Fatalf("uncovered change: %v", err)
	}
}

func TestTampering(t *testing.T) {
	pub, priv := newKey(2)
	tests := []struct {
		name   string
		tamper func(r *http.Request)
		want   error
	}{
		{"authority", func(r *http.Request) { r.Host = "evil.example" }, ErrInvalid},
		{"method", func(r *http.Request) { r.Method = http.MethodPost }, ErrInvalid},
		{"path", func(r *http.Request) { r.URL.Path = "/articles/2" }, ErrInvalid},
		{"covered header", func(r *http.Request) { r.Header.Set("Crawler-Exact-Price", "USD 0.00") }, ErrInvalid},
		{"covered header removed", func(r *http.Request) { r.Header.Del("Crawler-Exact-Price") }, ErrInvalid},
		{"covered header added line", func(r *http.Request) { r.Header.Add("Crawler-Exact-Price", "USD 9") }, ErrInvalid},
		{"signature agent", func(r *http.Request) { r.Header.Set("Signature-Agent", `"https://evil.example"`) }, ErrInvalid},
		{"params expires", func(r *http.Request) {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), "expires=", "expires=1", 1))
		}, ErrInvalid},
		{"params nonce", func(r *http.Request) {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), `nonce="n-1"`, `nonce="n-2"`, 1))
		}, ErrInvalid},
		{"params reordered", func(r *http.Request) {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), `;nonce="n-1";tag="web-bot-auth"`, `;tag="web-bot-auth";nonce="n-1"`, 1))
		}, ErrInvalid},
		{"signature bit", func(r *http.Request) {
			v := r.Header.Get("Signature")
			b := []byte(v)
			if b[7] == 'A' {
				b[7] = 'B'
			} else {
				b[7] = 'A'
			}
			r.Header.Set("Signature", string(b))
		}, ErrInvalid},
		{"expired", func(*http.Request) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signedRequest(t, priv)
			tt.tamper(r)
			_, err := VerifyRequest(r, Tag, lookupFor(pub), t0)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("untampered: %v", err)
				}
				_, err = VerifyRequest(r, Tag, lookupFor(pub), t0.Add(2*time.Minute))
				tt.want = ErrExpired
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestMalformed: every broken input gives a clear error of the right kind.
func TestMalformed(t *testing.T) {
	pub, priv := newKey(3)
	good := signedRequest(t, priv)
	in, sig := good.Header.Get("Signature-Input"), good.Header.Get("Signature")
	_, rest, _ := strings.Cut(in, "=")
	tests := []struct {
		name      string
		input     []string
		signature []string
		want      error
		msg       string
	}{
		{"none", nil, nil, ErrNoSignature, ""},
		{"signature only", nil, []string{sig}, ErrInvalid, "without Signature-Input"},
		{"input only", []string{in}, nil, ErrInvalid, "no Signature member"},
		{"duplicate label one line", []string{in + ", " + in}, []string{sig}, ErrInvalid, "twice"},
		{"duplicate label two lines", []string{in, in}, []string{sig}, ErrInvalid, "twice"},
		{"not a dictionary", []string{"sig1=(\"@authority\""}, []string{sig}, ErrInvalid, "Signature-Input"},
		{"member not inner list", []string{`sig1="x"`}, []string{sig}, ErrInvalid, "inner list"},
		{"signature not bytes", []string{in}, []string{`sig1="abc"`}, ErrInvalid, "byte sequence"},
		{"bad base64", []string{in}, []string{`sig1=:!!!:`}, ErrInvalid, "Signature"},
		{"short signature", []string{in}, []string{`sig1=:AAAA:`}, ErrInvalid, "bytes"},
		{"unknown component", []string{`sig1=("@bogus")` + rest[strings.Index(rest, ")")+1:]}, []string{sig}, ErrInvalid, "unsupported derived"},
		{"unknown parameter", []string{`sig1=("@authority";foo)` + rest[strings.Index(rest, ")")+1:]}, []string{sig}, ErrInvalid, "unsupported parameter"},
		{"uppercase field", []string{`sig1=("Host")` + rest[strings.Index(rest, ")")+1:]}, []string{sig}, ErrInvalid, "lowercase"},
		{"missing header", []string{`sig1=("x-missing")` + rest[strings.Index(rest, ")")+1:]}, []string{sig}, ErrInvalid, "absent"},
		{"signature-params covered", []string{`sig1=("@signature-params")` + rest[strings.Index(rest, ")")+1:]}, []string{sig}, ErrInvalid, "unsupported"},
		{"alg", []string{strings.Replace(in, `"ed25519"`, `"rsa-pss-sha512"`, 1)}, []string{sig}, ErrInvalid, "alg"},
		{"created not integer", []string{strings.Replace(in, "created=", `created="`, 1)}, []string{sig}, ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://example.com/articles/1?x=1", nil)
			r.Header = good.Header.Clone()
			r.Header.Del("Signature-Input")
			r.Header.Del("Signature")
			for _, v := range tt.input {
				r.Header.Add("Signature-Input", v)
			}
			for _, v := range tt.signature {
				r.Header.Add("Signature", v)
			}
			_, err := VerifyRequest(r, "", lookupFor(pub), t0)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestWrongKey(t *testing.T) {
	_, priv := newKey(4)
	r := signedRequest(t, priv)
	shortKey := func(string) (ed25519.PublicKey, error) { return ed25519.PublicKey{1, 2, 3}, nil }
	if _, err := VerifyRequest(r, Tag, shortKey, t0); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("short key: %v", err)
	}
	other, _ := newKey(5)
	otherKey := func(string) (ed25519.PublicKey, error) { return other, nil }
	if _, err := VerifyRequest(r, Tag, otherKey, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := VerifyRequest(r, Tag, nil, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("nil lookup: %v", err)
	}
}

func TestSignErrors(t *testing.T) {
	_, priv := newKey(6)
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	p := Params{Created: t0}
	cases := []struct {
		name  string
		label string
		comps []string
		key   ed25519.PrivateKey
		p     Params
	}{
		{"bad label", "Sig1", []string{"@authority"}, priv, p},
		{"short key", "sig1", []string{"@authority"}, priv[:10], p},
		{"unknown component", "sig1", []string{"@nope"}, priv, p},
		{"missing header", "sig1", []string{"x-nope"}, priv, p},
		{"duplicate component", "sig1", []string{"@authority", "@authority"}, priv, p},
		{"req on request", "sig1", []string{"@authority;req"}, priv, p},
		{"status on request", "sig1", []string{"@status"}, priv, p},
		{"bad alg", "sig1", []string{"@authority"}, priv, Params{Alg: "hmac-sha256"}},
		{"bad keyid", "sig1", []string{"@authority"}, priv, Params{KeyID: "é"}},
		{"query-param without name", "sig1", []string{"@query-param"}, priv, p},
		{"name on field", "sig1", []string{`x;name="a"`}, priv, p},
		{"trailer", "sig1", []string{"x;tr"}, priv, p},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := Sign(r, c.label, c.comps, c.p, c.key); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if err := Sign(r, "sig1", []string{"@authority"}, p, priv); err != nil {
		t.Fatal(err)
	}
	if err := Sign(r, "sig1", []string{"@authority"}, p, priv); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second sig1: %v", err)
	}
	if err := Sign(r, "sig2", []string{"@authority", "signature-input;key=\"sig1\""}, p, priv); err != nil {
		t.Fatal(err)
	}
	if got := len(r.Header.Values("Signature-Input")); got != 2 {
		t.Fatalf("%d Signature-Input lines", got)
	}
}

// TestComponentValues covers derived components and field parameters beyond the
// RFC's B.2 vectors.
func TestComponentValues(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://Example.com:80/a%2Fb/c?a=1&b=x+y&c=%C3%A7&c2=%zz&d=&e=1&e=2", nil)
	r.Header.Add("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")
	r.Header.Add("X-Multi", " one ")
	r.Header.Add("X-Multi", "two\r\n  folded")
	r.Header.Add("X-Empty", "")
	r.Header.Add("Signature-Agent", `sig1="https://crawler.example"`)
	tests := map[string]string{
		"@method":                    `GET`,
		"@authority":                 `example.com`,
		"@scheme":                    `http`,
		"@target-uri":                `http://example.com/a%2Fb/c?a=1&b=x+y&c=%C3%A7&c2=%zz&d=&e=1&e=2`,
		"@request-target":            `/a%2Fb/c?a=1&b=x+y&c=%C3%A7&c2=%zz&d=&e=1&e=2`,
		"@path":                      `/a%2Fb/c`,
		"@query":                     `?a=1&b=x+y&c=%C3%A7&c2=%zz&d=&e=1&e=2`,
		`@query-param;name="b"`:      `x%20y`,
		`@query-param;name="c"`:      `%C3%A7`,
		`@query-param;name="c2"`:     `%25zz`,
		`@query-param;name="d"`:      ``,
		"example-dict":               `a=1,    b=2;x=1;y=2,   c=(a   b   c)`,
		"example-dict;sf":            `a=1, b=2;x=1;y=2, c=(a b c)`,
		`example-dict;key="b"`:       `2;x=1;y=2`,
		`example-dict;key="c"`:       `(a b c)`,
		"x-multi":                    `one, two folded`,
		"x-multi;bs":                 `:b25l:, :dHdvIGZvbGRlZA==:`,
		"x-empty":                    ``,
		`signature-agent;key="sig1"`: `"https://crawler.example"`,
		"host":                       `Example.com:80`,
	}
	for comp, want := range tests {
		base, err := SignatureBase(r, []string{comp}, Params{})
		if err != nil {
			t.Errorf("%s: %v", comp, err)
			continue
		}
		line, _, _ := strings.Cut(string(base), "\n")
		_, got, _ := strings.Cut(line, ": ")
		if got != want {
			t.Errorf("%s = %q, want %q", comp, got, want)
		}
	}
	for _, bad := range []string{`@query-param;name="e"`, `@query-param;name="zz"`, `example-dict;key="zz"`, "x-multi;sf;bs"} {
		if _, err := SignatureBase(r, []string{bad}, Params{}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	// @scheme from TLS, and from URL.Scheme behind TLS termination.
	r2 := httptest.NewRequest(http.MethodGet, "/x", nil)
	r2.Host = "a.example:443"
	r2.URL.Scheme = "https"
	base, _ := SignatureBase(r2, []string{"@scheme", "@authority"}, Params{})
	if !strings.HasPrefix(string(base), "\"@scheme\": https\n\"@authority\": a.example\n") {
		t.Errorf("behind TLS termination: %q", base)
	}
	// A line break smuggled into a value must not forge base lines.
	r2.Header["X-Evil"] = []string{"a\n\"@method\": POST"}
	if _, err := SignatureBase(r2, []string{"x-evil"}, Params{}); err == nil {
		t.Error("line break accepted")
	}
}

// TestResponseReq covers ;req in a response signature (RFC 9421 §2.4).
func TestResponseReq(t *testing.T) {
	resp := testResponseB2(t)
	base, err := ResponseSignatureBase(resp, []string{"@status", `"@authority";req`, "@method;req", `content-digest;req`}, Params{Created: rfcCreated})
	if err != nil {
		t.Fatal(err)
	}
	want := `"@status": 200
"@authority";req: example.com
"@method";req: POST
"content-digest";req: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:
"@signature-params": ("@status" "@authority";req "@method";req "content-digest";req);created=1618884473`
	if string(base) != want {
		t.Errorf("got\n%s\nwant\n%s", base, want)
	}
	if _, err := ResponseSignatureBase(resp, []string{"@method"}, Params{}); err == nil {
		t.Error("@method without req on a response accepted")
	}
}

func FuzzVerifyRequest(f *testing.F) {
	pub, priv := newKey(7)
	good := signedRequest(f, priv)
	f.Add(good.Header.Get("Signature-Input"), good.Header.Get("Signature"), good.Header.Get("Signature-Agent"))
	f.Add(`sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`, "sig-b26=:"+b26Signature+":", "")
	f.Add(`a=("@query-param";name="x" "x";key="a" "x";sf "x";bs "@status" "@authority";req), b=()`, `a=:AAAA:, b=:AA==:`, `"x"`)
	f.Add(`sig1=("a\"b" "@x");created=-1;expires=99999999999999`, `sig1=:`, `a=b`)
	f.Add(`sig1=();x="(" , sig2=("a,b")`, `sig1=::, sig2=::`, `"https://a.example/path"`)
	f.Fuzz(func(t *testing.T, input, signature, agent string) {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/articles/1?x=1", nil)
		r.Header = good.Header.Clone()
		r.Header["Signature-Input"] = []string{input}
		r.Header["Signature"] = []string{signature}
		r.Header["Signature-Agent"] = []string{agent}
		s, err := VerifyRequest(r, "", lookupFor(pub), t0)
		if err == nil && len(s.Components) == 0 && s.Label == "" {
			t.Fatal("success without a signature")
		}
		v := &Verifier{}
		_, _ = v.Verify(t.Context(), r, t0)
		_ = v.NeedsFetch(r)
	})
}
