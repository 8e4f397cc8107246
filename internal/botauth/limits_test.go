package botauth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileRequest builds the reviewer's attack: one signature covering many
// distinct members of one dictionary header with ;key, padded to about size
// bytes of Signature-Input, with parameters that pass every check that needs no
// key (so all the parsing runs before the key lookup fails).
func hostileRequest(size int) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	var dict, comps strings.Builder
	for i := 0; comps.Len() < size; i++ {
		if i > 0 {
			dict.WriteString(", ")
			comps.WriteByte(' ')
		}
		fmt.Fprintf(&dict, "k%d=1", i)
		fmt.Fprintf(&comps, `"x-d";key="k%d"`, i)
	}
	r.Header.Set("X-D", dict.String())
	r.Header.Set("Signature-Agent", `"https://crawler.example"`)
	r.Header.Set("Signature-Input", fmt.Sprintf(`sig1=("@authority" "signature-agent" %s);created=%d;expires=%d;keyid="k";alg="ed25519";tag="web-bot-auth"`,
		comps.String(), t0.Unix(), t0.Add(time.Minute).Unix()))
	r.Header.Set("Signature", "sig1=:"+strings.Repeat("A", 86)+"==:")
	return r
}

// refusedFast checks that verifying r fails with ErrInvalid mentioning msg, and
// takes well under a few milliseconds (the attack took seconds). VerifyRequest
// is checked too unless onlyVerifier (it ignores Signature-Agent).
func refusedFast(t *testing.T, r *http.Request, msg string, onlyVerifier ...bool) {
	t.Helper()
	v := &Verifier{}
	const runs = 20
	start := time.Now()
	for range runs {
		_, err := v.Verify(t.Context(), r, t0)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("Verify: %v, want ErrInvalid containing %q", err, msg)
		}
		if len(onlyVerifier) > 0 {
			continue
		}
		_, err = VerifyRequest(r, "", nil, t0)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("VerifyRequest: %v, want ErrInvalid containing %q", err, msg)
		}
	}
	if per := time.Since(start) / (2 * runs); per > 2*time.Millisecond {
		t.Fatalf("refusal takes %s per verification", per)
	}
}

// TestHostileSignatureInputRefusedFast: finding 1. A 64 KB Signature-Input used
// to cost seconds of CPU before any key was needed; now the size limits refuse
// it before parsing.
func TestHostileSignatureInputRefusedFast(t *testing.T) {
	t.Run("64KB one line", func(t *testing.T) {
		refusedFast(t, hostileRequest(64<<10), "limit 8192")
	})
	t.Run("64KB over many lines", func(t *testing.T) {
		r := hostileRequest(0)
		line := r.Header.Get("Signature-Input")
		for i := 0; len(r.Header.Values("Signature-Input"))*len(line) < 64<<10; i++ {
			r.Header.Add("Signature-Input", strings.Replace(line, "sig1=", fmt.Sprintf("s%d=", i), 1))
		}
		refusedFast(t, r, "limit 8192")
	})
	t.Run("64KB Signature", func(t *testing.T) {
		r := hostileRequest(0)
		r.Header.Set("Signature", "sig1=:"+strings.Repeat("A", 64<<10)+":")
		refusedFast(t, r, "Signature is")
	})
	t.Run("64KB Signature-Agent", func(t *testing.T) {
		r := hostileRequest(0)
		var b strings.Builder
		for i := 0; b.Len() < 64<<10; i++ {
			fmt.Fprintf(&b, `s%d="https://a%d.example", `, i, i)
		}
		b.WriteString(`sig1="https://crawler.example"`)
		r.Header.Set("Signature-Agent", b.String())
		refusedFast(t, r, "Signature-Agent", true)
		if a, ok := ClaimedAgent(r); ok {
			t.Fatalf("ClaimedAgent on an oversized header: %q", a)
		}
	})
	t.Run("33 components", func(t *testing.T) {
		r := hostileRequest(0)
		var comps []string
		for i := range maxComponents + 1 {
			comps = append(comps, fmt.Sprintf(`"x-%d"`, i))
		}
		r.Header.Set("Signature-Input", `sig1=(`+strings.Join(comps, " ")+`);created=1;keyid="k"`)
		refusedFast(t, r, "33 covered components, limit 32")
	})
	t.Run("duplicates", func(t *testing.T) {
		r := hostileRequest(0)
		r.Header.Set("Signature-Input", fmt.Sprintf(`sig1=(%s);created=%d;expires=%d;keyid="k";tag="web-bot-auth"`,
			`"signature-agent" `+strings.Repeat(`"@authority" `, maxComponents-1), t0.Unix(), t0.Add(time.Minute).Unix()))
		refusedFast(t, r, "twice")
	})
	t.Run("9 signatures", func(t *testing.T) {
		r := hostileRequest(0)
		var in, sig []string
		for i := range maxSignatures + 1 {
			in = append(in, fmt.Sprintf(`s%d=("@authority");created=1;keyid="k";tag="web-bot-auth"`, i))
			sig = append(sig, fmt.Sprintf(`s%d=:AAAA:`, i))
		}
		r.Header.Set("Signature-Input", strings.Join(in, ", "))
		r.Header.Set("Signature", strings.Join(sig, ", "))
		refusedFast(t, r, "9 signatures, limit 8")
	})
}

// TestHostileWithinLimits: the worst a request can do inside the limits (32
// ;key components over one huge dictionary header) stays cheap, because the
// header is parsed once, not once per component.
func TestHostileWithinLimits(t *testing.T) {
	r := hostileRequest(0)
	var dict strings.Builder
	for i := 0; dict.Len() < 256<<10; i++ {
		fmt.Fprintf(&dict, "k%d=%d, ", i, i)
	}
	dict.WriteString("last=1")
	r.Header.Set("X-D", dict.String())
	var comps []string
	for i := range maxComponents {
		comps = append(comps, fmt.Sprintf(`"x-d";key="k%d"`, i*97))
	}
	r.Header.Set("Signature-Input", fmt.Sprintf(`sig1=(%s);created=%d;expires=%d;keyid="k";alg="ed25519";tag="web-bot-auth"`,
		strings.Join(comps, " "), t0.Unix(), t0.Add(time.Minute).Unix()))
	start := time.Now()
	_, err := VerifyRequest(r, "", nil, t0)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey (parsed everything, then no key)", err)
	}
	// One parse of a 256 KB dictionary; it was 32 parses before.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("took %s", d)
	}
}

// keyComponentsRequest signs a request with 32 components, 30 of them ;key
// members of one dictionary header.
func keyComponentsRequest(t testing.TB, priv ed25519.PrivateKey, agent string, now time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	var dict []string
	comps := []string{"@authority", "signature-agent"}
	for i := range maxComponents - 2 {
		dict = append(dict, fmt.Sprintf("k%d=%d", i, i))
		comps = append(comps, fmt.Sprintf(`x-d;key="k%d"`, i))
	}
	r.Header.Set("X-D", strings.Join(dict, ", "))
	r.Header.Set("Signature-Agent", `"`+agent+`"`)
	p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(priv.Public().(ed25519.PublicKey)), Alg: "ed25519", Tag: Tag}
	if err := Sign(r, "sig1", comps, p, priv); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestMaxComponentsVerifyFast: a legitimate signature at the limit verifies, and
// quickly.
func TestMaxComponentsVerifyFast(t *testing.T) {
	pub, priv := newKey(12)
	r := keyComponentsRequest(t, priv, "https://crawler.example", t0)
	const runs = 20
	start := time.Now()
	for range runs {
		s, err := VerifyRequest(r, Tag, lookupFor(pub), t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Components) != maxComponents || !s.Covers(`x-d;key="k29"`) {
			t.Fatalf("components %v", s.Components)
		}
	}
	if per := time.Since(start) / runs; per > 10*time.Millisecond {
		t.Fatalf("%s per verification", per)
	}
}

// BenchmarkVerifyMaxKeyComponents: 32 components, 30 of them ;key, through
// Verifier with a cached directory. Before the fix (pairwise duplicate check,
// one dictionary parse per ;key) this took about 3.5x the time and 4x the
// allocations.
func BenchmarkVerifyMaxKeyComponents(b *testing.B) {
	pub, priv := newKey(21)
	a := newAgentServerB(b, pub)
	v := &Verifier{Directory: NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})}
	now := time.Now()
	r := keyComponentsRequest(b, priv, a.URL, now)
	ctx := context.Background()
	if _, err := v.Verify(ctx, r, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, r, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefuseHostile64KB: finding 1's attack, now refused by the size limit.
func BenchmarkRefuseHostile64KB(b *testing.B) {
	r := hostileRequest(64 << 10)
	v := &Verifier{}
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.Verify(ctx, r, t0); !errors.Is(err, ErrInvalid) {
			b.Fatal(err)
		}
	}
}

// TestNormalizeAgentForms: finding 2. One normaliser for every comparison; the
// errors say what is wrong.
func TestNormalizeAgentForms(t *testing.T) {
	good := map[string]string{
		"https://chatgpt.com:443":       "https://chatgpt.com",
		"https://chatgpt.com":           "https://chatgpt.com",
		"HTTPS://ChatGPT.com:443/":      "https://chatgpt.com",
		"https://crawler.example:0443":  "https://crawler.example",
		"https://crawler.example:08443": "https://crawler.example:8443",
		"https://[2001:DB8::0:1]:443":   "https://[2001:db8::1]",
		"https://[2001:db8::1]:8443":    "https://[2001:db8::1]:8443",
		"https://192.0.2.1":             "https://192.0.2.1",
	}
	for in, want := range good {
		got, err := NormalizeAgent(in)
		if err != nil || got != want {
			t.Errorf("NormalizeAgent(%q) = %q, %v; want %q", in, got, err, want)
		}
		// Idempotent: the normal form normalises to itself.
		if again, err := NormalizeAgent(got); err != nil || again != got {
			t.Errorf("NormalizeAgent(%q) = %q, %v", got, again, err)
		}
	}
	bad := map[string]string{
		"http://crawler.example":              "want https",
		"crawler.example":                     "no scheme",
		"https://crawler.example/keys":        "path",
		"https://u@crawler.example":           "userinfo",
		"https://crawler.example?x":           "query",
		"https://crawler.example/?":           "query",
		"https://crawler.example#f":           "fragment",
		"https://":                            "no host",
		"https:crawler.example":               "no host",
		"https://crawler.example:":            "empty port",
		"https://crawler.example:0":           "invalid port",
		"https://crawler.example:70000":       "invalid port",
		"https://exa%41mple.com":              "percent-encoding",
		"https://crawler_ex ample":            "",
		"https://[fe80::1%25eth0]":            "percent-encoding",
		"https://[::ffff:1.2.3.4x]":           "",
		"https://crawler.example\\@evil":      "backslash",
		"https://" + strings.Repeat("a", 600): "longer than 512 bytes",
		"":                                    "no scheme",
	}
	for in, msg := range bad {
		_, err := NormalizeAgent(in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("NormalizeAgent(%q): %v, want an error containing %q", in, err, msg)
		}
	}
}

// allowRecorder is a DirectoryOptions.Allowed that records what it is asked.
type allowRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *allowRecorder) allowed(agent string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, agent)
	return true
}

// TestIdentityAgentNormalized: finding 2. However the crawler spells its agent,
// Identity.Agent and what Allowed sees are NormalizeAgent's form.
func TestIdentityAgentNormalized(t *testing.T) {
	pub, priv := newKey(13)
	a := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})
	rec := &allowRecorder{}
	v := &Verifier{Directory: NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: rec.allowed, AllowPrivate: true})}
	want, err := NormalizeAgent(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	spelled := "HTTPS://" + strings.TrimPrefix(a.URL, "https://") + "/"
	r := signedFor(t, spelled, priv)
	id, err := v.Verify(t.Context(), r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if id.Agent != want {
		t.Errorf("Identity.Agent = %q, want %q", id.Agent, want)
	}
	if got, ok := ClaimedAgent(r); !ok || got != want {
		t.Errorf("ClaimedAgent = %q, %v; want %q", got, ok, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range rec.seen {
		if s != want {
			t.Errorf("Allowed got %q, want %q", s, want)
		}
	}
}

// TestDictionaryAgentPerSignature: finding 2. With the dictionary form of
// Signature-Agent, each signature's key is looked up in its own member's
// directory, and Identity.Agent is that of the signature the identity comes
// from (the first in Signature-Input), not simply the first member.
func TestDictionaryAgentPerSignature(t *testing.T) {
	pubA, privA := newKey(14)
	pubB, privB := newKey(15)
	srvA := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pubA}})
	srvB := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pubB}})
	agentA, _ := NormalizeAgent(srvA.URL)
	agentB, _ := NormalizeAgent(srvB.URL)
	dir := NewDirectory(DirectoryOptions{Client: srvA.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})
	v := &Verifier{Directory: dir}
	now := time.Now()
	sign := func(r *http.Request, label string, priv ed25519.PrivateKey) {
		t.Helper()
		p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(priv.Public().(ed25519.PublicKey)), Alg: "ed25519", Tag: Tag}
		if err := Sign(r, label, []string{"@authority", `signature-agent;key="` + label + `"`}, p, priv); err != nil {
			t.Fatal(err)
		}
	}
	newReq := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		// Member order differs from signature order on purpose.
		r.Header.Set("Signature-Agent", `sig2="`+srvB.URL+`/", sig1="`+strings.ToUpper(srvA.URL[:5])+srvA.URL[5:]+`"`)
		return r
	}

	r := newReq()
	sign(r, "sig1", privA)
	sign(r, "sig2", privB)
	id, err := v.Verify(t.Context(), r, now)
	if err != nil {
		t.Fatal(err)
	}
	if id.Agent != agentA || id.KeyID != Thumbprint(pubA) || id.Signed.Label != "sig1" {
		t.Errorf("identity %+v, want sig1 from %s", id, agentA)
	}
	// ClaimedAgent is the first member, normalised (a claim, not the identity).
	if got, ok := ClaimedAgent(r); !ok || got != agentB {
		t.Errorf("ClaimedAgent = %q, %v; want %q", got, ok, agentB)
	}

	r = newReq()
	sign(r, "sig2", privB)
	sign(r, "sig1", privA)
	if id, err := v.Verify(t.Context(), r, now); err != nil || id.Agent != agentB || id.KeyID != Thumbprint(pubB) {
		t.Errorf("sig2 first: %+v, %v; want %s", id, err, agentB)
	}

	// A key signing under the other member's label is looked up in that
	// member's directory, where it is not.
	r = newReq()
	sign(r, "sig1", privB)
	if _, err := v.Verify(t.Context(), r, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key of B under sig1 (agent A): %v, want ErrUnknownKey", err)
	}
}

// TestClaimedAgent: finding 4.
func TestClaimedAgent(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	if a, ok := ClaimedAgent(r); ok || a != "" {
		t.Fatalf("no header: %q, %v", a, ok)
	}
	if allocs := testing.AllocsPerRun(100, func() { ClaimedAgent(r) }); allocs != 0 {
		t.Fatalf("ClaimedAgent allocates %v times without the header", allocs)
	}
	if _, ok := ClaimedAgent(nil); ok {
		t.Fatal("nil request")
	}
	for header, want := range map[string]string{
		`"https://ChatGPT.com:443"`:                          "https://chatgpt.com",
		`"https://chatgpt.com/"`:                             "https://chatgpt.com",
		`sig1="https://a.example", sig2="https://b.example"`: "https://a.example",
		`sig1="https://a.example:443";x=1`:                   "https://a.example",
		`"http://chatgpt.com"`:                               "",
		`"https://chatgpt.com/path"`:                         "",
		`chatgpt`:                                            "",
		`sig1=1, sig2="https://b.example"`:                   "",
		`sig1=(`:                                             "",
	} {
		r.Header.Set("Signature-Agent", header)
		got, ok := ClaimedAgent(r)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q, %v; want %q", header, got, ok, want)
		}
	}
}

// TestDefaultMaxValidity: finding 3. Without a nonce database a captured
// signature replays until it expires, so the default window is 5 minutes;
// MaxValidity still raises it.
func TestDefaultMaxValidity(t *testing.T) {
	pub, priv := newKey(16)
	a := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})
	dir := NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})
	sign := func(validity time.Duration) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		r.Header.Set("Signature-Agent", `"`+a.URL+`"`)
		p := Params{Created: t0, Expires: t0.Add(validity), KeyID: Thumbprint(pub), Alg: "ed25519", Tag: Tag}
		if err := Sign(r, "sig1", []string{"@authority", "signature-agent"}, p, priv); err != nil {
			t.Fatal(err)
		}
		return r
	}
	def := &Verifier{Directory: dir}
	if _, err := def.Verify(t.Context(), sign(5*time.Minute), t0.Add(time.Second)); err != nil {
		t.Fatalf("5 min: %v", err)
	}
	long := sign(10 * time.Minute)
	if _, err := def.Verify(t.Context(), long, t0.Add(time.Second)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "exceeds 5m0s") {
		t.Fatalf("10 min with the default: %v", err)
	}
	custom := &Verifier{Directory: dir, MaxValidity: time.Hour}
	if _, err := custom.Verify(t.Context(), long, t0.Add(time.Second)); err != nil {
		t.Fatalf("10 min with MaxValidity 1h: %v", err)
	}
}
