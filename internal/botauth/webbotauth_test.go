package botauth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// agentServer is a crawler's key directory on a real TLS socket.
type agentServer struct {
	*httptest.Server
	hits atomic.Int64
}

type agentConfig struct {
	keys   []ed25519.PublicKey
	signer ed25519.PrivateKey // signs the response when set
	status int                // default 200
	body   string             // overrides the JWKS
	delay  time.Duration
}

func newAgentServer(t *testing.T, c agentConfig) *agentServer {
	t.Helper()
	a := &agentServer{}
	a.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		time.Sleep(c.delay)
		if r.URL.Path != WellKnownPath {
			http.NotFound(w, r)
			return
		}
		if c.status != 0 {
			w.WriteHeader(c.status)
			return
		}
		body := c.body
		if body == "" {
			var keys []map[string]string
			for _, k := range c.keys {
				keys = append(keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(k)})
			}
			keys = append(keys, map[string]string{"kty": "EC", "crv": "P-256", "x": "ignored", "y": "ignored"})
			b, _ := json.Marshal(map[string]any{"keys": keys})
			body = string(b)
		}
		w.Header().Set("Content-Type", DirectoryMediaType)
		w.Header().Set("Cache-Control", "max-age=86400")
		if c.signer != nil {
			now := time.Now()
			resp := &http.Response{StatusCode: http.StatusOK, Header: w.Header(), Request: r}
			p := Params{Created: now, Expires: now.Add(5 * time.Minute), KeyID: Thumbprint(c.signer.Public().(ed25519.PublicKey)), Alg: "ed25519", Tag: DirectoryTag}
			if err := SignResponse(resp, "binding0", []string{"@authority;req"}, p, c.signer); err != nil {
				t.Error(err)
			}
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(a.Close)
	return a
}

// verifierServer answers each request with the outcome of Verify: 200 and the
// agent, or 401 and the sentinel's name.
func verifierServer(t *testing.T, v *Verifier) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r.Context(), r, time.Now())
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "%s|%v", sentinelName(err), err)
			return
		}
		fmt.Fprintf(w, "ok|%s|%s", id.Agent, id.KeyID)
	}))
	t.Cleanup(s.Close)
	return s
}

func sentinelName(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{{"no-signature", ErrNoSignature}, {"invalid", ErrInvalid}, {"expired", ErrExpired}, {"unknown-key", ErrUnknownKey}, {"directory", ErrDirectory}, {"not-allowed", ErrNotAllowed}} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}

// crawl sends one request signed like a real crawler and returns the verifier's
// verdict ("ok" or a sentinel name) and the body.
func crawl(t *testing.T, target, agent string, priv ed25519.PrivateKey, edit func(*Params)) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target+"/articles/1", nil)
	if agent != "" {
		req.Header.Set("Signature-Agent", `"`+agent+`"`)
	}
	now := time.Now()
	p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(priv.Public().(ed25519.PublicKey)), Alg: "ed25519", Nonce: "abc", Tag: Tag}
	if edit != nil {
		edit(&p)
	}
	comps := []string{"@authority", "@method", "@path"}
	if agent != "" {
		comps = append(comps, "signature-agent")
	}
	if err := Sign(req, "sig1", comps, p, priv); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	verdict, _, _ := strings.Cut(string(b), "|")
	return verdict, string(b)
}

func TestWebBotAuthEndToEnd(t *testing.T) {
	pub, priv := newKey(10)
	_, stranger := newKey(11)
	good := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})
	down := newAgentServer(t, agentConfig{status: http.StatusServiceUnavailable, delay: 100 * time.Millisecond})
	huge := newAgentServer(t, agentConfig{body: `{"keys":[],"pad":"` + strings.Repeat("x", 70<<10) + `"}`})
	wrongType := newAgentServer(t, agentConfig{body: `{"keys":[]}`})
	unlisted := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})

	allowed := map[string]bool{good.URL: true, down.URL: true, huge.URL: true, wrongType.URL: true}
	dir := NewDirectory(DirectoryOptions{
		Client:       good.Client(),
		Allowed:      func(a string) bool { return allowed[a] },
		AllowPrivate: true,
	})
	v := &Verifier{Directory: dir}
	srv := verifierServer(t, v)

	t.Run("good", func(t *testing.T) {
		verdict, body := crawl(t, srv.URL, good.URL, priv, nil)
		if verdict != "ok" || !strings.Contains(body, good.URL) || !strings.Contains(body, Thumbprint(pub)) {
			t.Fatal(body)
		}
		// Cached: a second request does not fetch again.
		crawl(t, srv.URL, good.URL, priv, nil)
		if n := good.hits.Load(); n != 1 {
			t.Fatalf("%d directory fetches, want 1", n)
		}
	})
	cases := []struct {
		name  string
		agent string
		priv  ed25519.PrivateKey
		edit  func(*Params)
		want  string
	}{
		{"expired", good.URL, priv, func(p *Params) { p.Created, p.Expires = p.Created.Add(-2*time.Minute), p.Created.Add(-time.Minute) }, "expired"},
		{"not yet valid", good.URL, priv, func(p *Params) { p.Created, p.Expires = p.Created.Add(5*time.Minute), p.Created.Add(6*time.Minute) }, "expired"},
		{"too long validity", good.URL, priv, func(p *Params) { p.Expires = p.Created.Add(48 * time.Hour) }, "invalid"},
		{"no expires", good.URL, priv, func(p *Params) { p.Expires = time.Time{} }, "invalid"},
		{"wrong tag", good.URL, priv, func(p *Params) { p.Tag = "something-else" }, "no-signature"},
		{"unknown keyid", good.URL, stranger, nil, "unknown-key"},
		{"keyid of another key", good.URL, stranger, func(p *Params) { p.KeyID = Thumbprint(pub) }, "invalid"},
		{"no agent", "", priv, nil, "unknown-key"},
		{"agent with path", good.URL + "/crawler", priv, nil, "invalid"},
		{"http agent", strings.Replace(good.URL, "https", "http", 1), priv, nil, "invalid"},
		{"empty directory", wrongType.URL, priv, nil, "unknown-key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if verdict, body := crawl(t, srv.URL, c.agent, c.priv, c.edit); verdict != c.want {
				t.Fatalf("got %s, want %s", body, c.want)
			}
		})
	}

	t.Run("agent not allowed", func(t *testing.T) {
		if verdict, body := crawl(t, srv.URL, unlisted.URL, priv, nil); verdict != "not-allowed" {
			t.Fatal(body)
		}
		if n := unlisted.hits.Load(); n != 0 {
			t.Fatalf("%d fetches of a not-allowed agent", n)
		}
	})

	t.Run("uncovered agent", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
		req.Header.Set("Signature-Agent", `"`+good.URL+`"`)
		now := time.Now()
		p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(pub), Tag: Tag}
		if err := Sign(req, "sig1", []string{"@authority"}, p, priv); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), req, now); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not covered") {
			t.Fatal(err)
		}
	})

	t.Run("directory down", func(t *testing.T) {
		var wg sync.WaitGroup
		verdicts := make(chan string, 100)
		for range 100 {
			wg.Go(func() {
				verdict, _ := crawl(t, srv.URL, down.URL, priv, nil)
				verdicts <- verdict
			})
		}
		wg.Wait()
		close(verdicts)
		for verdict := range verdicts {
			if verdict != "directory" {
				t.Fatalf("got %s, want directory", verdict)
			}
		}
		if n := down.hits.Load(); n != 1 {
			t.Fatalf("%d fetches for 100 concurrent requests, want 1", n)
		}
		if !dir.Cached(down.URL) || v.NeedsFetch(signedFor(t, down.URL, priv)) {
			t.Fatal("failure not cached")
		}
		crawl(t, srv.URL, down.URL, priv, nil)
		if n := down.hits.Load(); n != 1 {
			t.Fatalf("refetched within NegativeTTL: %d fetches", n)
		}
	})

	t.Run("oversized directory", func(t *testing.T) {
		if verdict, body := crawl(t, srv.URL, huge.URL, priv, nil); verdict != "directory" || !strings.Contains(body, "larger than") {
			t.Fatal(body)
		}
	})

	t.Run("private address refused", func(t *testing.T) {
		strict := NewDirectory(DirectoryOptions{Client: good.Client(), Allowed: func(string) bool { return true }})
		_, err := strict.Key(context.Background(), good.URL, Thumbprint(pub))
		if !errors.Is(err, ErrDirectory) || !strings.Contains(err.Error(), "non-public") {
			t.Fatal(err)
		}
	})
}

func signedFor(t *testing.T, agent string, priv ed25519.PrivateKey) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	r.Header.Set("Signature-Agent", `"`+agent+`"`)
	now := time.Now()
	p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(priv.Public().(ed25519.PublicKey)), Tag: Tag}
	if err := Sign(r, "sig1", []string{"@authority", "signature-agent"}, p, priv); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNeedsFetch(t *testing.T) {
	pub, priv := newKey(12)
	a := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})
	dir := NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: func(s string) bool { return s == a.URL }, AllowPrivate: true})
	v := &Verifier{Directory: dir}
	unsigned := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	if v.NeedsFetch(unsigned) {
		t.Fatal("unsigned request needs a fetch")
	}
	if allocs := testing.AllocsPerRun(100, func() { v.NeedsFetch(unsigned) }); allocs != 0 {
		t.Fatalf("NeedsFetch allocates %v times on an unsigned request", allocs)
	}
	r := signedFor(t, a.URL, priv)
	if !v.NeedsFetch(r) {
		t.Fatal("uncached agent does not need a fetch")
	}
	if v.NeedsFetch(signedFor(t, "https://not-allowed.example", priv)) {
		t.Fatal("not-allowed agent needs a fetch")
	}
	if _, err := v.Verify(context.Background(), r, time.Now()); err != nil {
		t.Fatal(err)
	}
	if v.NeedsFetch(r) {
		t.Fatal("cached agent needs a fetch")
	}
}

func TestDirectorySignatures(t *testing.T) {
	pub, priv := newKey(13)
	_, other := newKey(14)
	signed := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}, signer: priv})
	unsigned := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}})
	// Signed by a key the directory does not list: the listed key has no valid
	// signature.
	badSigner := newAgentServer(t, agentConfig{keys: []ed25519.PublicKey{pub}, signer: other})
	for _, c := range []struct {
		name    string
		srv     *agentServer
		require bool
		want    error
	}{
		{"signed, required", signed, true, nil},
		{"signed, optional", signed, false, nil},
		{"unsigned, optional", unsigned, false, nil},
		{"unsigned, required", unsigned, true, ErrUnknownKey},
		{"foreign signer, required", badSigner, true, ErrUnknownKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := NewDirectory(DirectoryOptions{Client: c.srv.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true, RequireSigned: c.require})
			_, err := dir.Key(context.Background(), c.srv.URL, Thumbprint(pub))
			if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	// A signature that fails drops its key even when signatures are optional.
	tampered := NewDirectory(DirectoryOptions{Client: signed.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})
	tampered.now = func() time.Time { return time.Now().Add(time.Hour) } // signature expired
	if _, err := tampered.Key(context.Background(), signed.URL, Thumbprint(pub)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key with a failing signature kept: %v", err)
	}
}

func TestDirectoryContextBoundsWait(t *testing.T) {
	slow := newAgentServer(t, agentConfig{status: http.StatusNotFound, delay: 300 * time.Millisecond})
	dir := NewDirectory(DirectoryOptions{Client: slow.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := dir.Key(ctx, slow.URL, "x"); !errors.Is(err, ErrDirectory) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// The fetch went on and its failure is cached.
	deadline := time.Now().Add(5 * time.Second)
	for !dir.Cached(slow.URL) {
		if time.Now().After(deadline) {
			t.Fatal("fetch result never cached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDirectoryEviction(t *testing.T) {
	a := newAgentServer(t, agentConfig{status: http.StatusNotFound})
	dir := NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true, MaxEntries: 2})
	host := strings.TrimPrefix(a.URL, "https://127.0.0.1")
	agents := []string{"https://127.0.0.1" + host, "https://localhost" + host, "https://[::1]" + host}
	for _, ag := range agents {
		dir.Key(context.Background(), ag, "x")
	}
	dir.mu.Lock()
	n := len(dir.entries)
	dir.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d entries, max 2", n)
	}
}

func TestNormalizeAgent(t *testing.T) {
	good := map[string]string{
		"https://Crawler.Example":      "https://crawler.example",
		"https://crawler.example/":     "https://crawler.example",
		"https://crawler.example:443":  "https://crawler.example",
		"https://crawler.example:8443": "https://crawler.example:8443",
	}
	for in, want := range good {
		if got, err := NormalizeAgent(in); err != nil || got != want {
			t.Errorf("%s: %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"http://crawler.example", "https://crawler.example/keys", "https://u@crawler.example", "https://crawler.example?x", "https://crawler.example#f", "https://", "crawler.example", "data:application/json,{}", "https://crawler.example:"} {
		if _, err := NormalizeAgent(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                       time.Hour,
		"max-age=600":            10 * time.Minute,
		"public, max-age=5":      time.Minute,
		"max-age=31536000":       24 * time.Hour,
		"no-store":               time.Hour,
		`max-age="120", private`: 2 * time.Minute,
	} {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		if got := cacheTTL(h, time.Hour); got != want {
			t.Errorf("%q: %s, want %s", cc, got, want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	pub, priv := newKey(20)
	a := newAgentServerB(b, pub)
	dir := NewDirectory(DirectoryOptions{Client: a.Client(), Allowed: func(string) bool { return true }, AllowPrivate: true})
	v := &Verifier{Directory: dir}
	r := httptest.NewRequest(http.MethodGet, "https://example.com/articles/1", nil)
	r.Header.Set("Signature-Agent", `"`+a.URL+`"`)
	now := time.Now()
	p := Params{Created: now, Expires: now.Add(time.Minute), KeyID: Thumbprint(pub), Alg: "ed25519", Nonce: "abc", Tag: Tag}
	if err := Sign(r, "sig1", []string{"@authority", "signature-agent", "@method", "@path"}, p, priv); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, r, now); err != nil { // warm the cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, r, now); err != nil {
			b.Fatal(err)
		}
	}
}

func newAgentServerB(b *testing.B, pub ed25519.PublicKey) *httptest.Server {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	}))
	b.Cleanup(s.Close)
	return s
}
