package botauth

import (
	"container/list"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WellKnownPath is where an agent publishes its key directory
// (draft-meunier-http-message-signatures-directory).
const WellKnownPath = "/.well-known/http-message-signatures-directory"

// DirectoryMediaType is the directory's media type. application/json is accepted
// too, because early directories were served with it.
const DirectoryMediaType = "application/http-message-signatures-directory+json"

// DirectoryTag is the tag of the signatures a directory puts on its own response.
const DirectoryTag = "http-message-signatures-directory"

// Defaults of DirectoryOptions.
const (
	defaultFetchTimeout = 5 * time.Second
	defaultTTL          = time.Hour      // without Cache-Control max-age
	minTTL              = time.Minute    // max-age is clamped to [minTTL, maxTTL]
	maxTTL              = 24 * time.Hour // so a directory can neither storm nor pin us
	defaultNegativeTTL  = time.Minute    // a failed fetch is retried at most this often
	defaultMaxEntries   = 1024           // agents cached
	defaultMaxBytes     = 64 << 10       // directory response size limit
	maxConcurrentFetch  = 8              // directory fetches in flight, all agents together
	maxRedirects        = 3              // followed, https only
)

// DirectoryOptions configure a Directory. The zero value is usable but allows no
// agent.
type DirectoryOptions struct {
	// Client fetches directories. Default: 5 s timeout, at most 3 redirects and
	// only to https. A given client is copied, not modified; when its Transport is
	// an *http.Transport (or nil), the copy's dialer refuses private addresses
	// unless AllowPrivate. Another RoundTripper is used as is: it must then do
	// its own address filtering.
	Client *http.Client
	// Allowed reports whether an agent may be fetched (the bundle's crawler list);
	// it gets the agent in NormalizeAgent's form "https://host[:port]", so the
	// list should be normalised with NormalizeAgent too. nil allows none: an
	// attacker must not be able to make our nodes fetch arbitrary URLs (SSRF).
	Allowed func(agent string) bool
	// AllowPrivate allows agents whose host resolves to loopback, private,
	// link-local or otherwise non-public addresses. For tests only; by default
	// such addresses are refused at dial time (after DNS resolution, so a public
	// name resolving to a private address is refused too).
	AllowPrivate bool
	// TTL is how long a directory is cached when its response has no
	// Cache-Control max-age (default 1 h). A max-age is used when present, clamped
	// to [1 min, 24 h].
	TTL time.Duration
	// NegativeTTL is how long a failed fetch is cached (default 1 min): requests
	// naming a broken directory then fail fast without refetching it.
	NegativeTTL time.Duration
	// MaxEntries is the number of agents cached (default 1024); the least
	// recently used is evicted first.
	MaxEntries int
	// MaxBytes limits the directory response body (default 64 KiB).
	MaxBytes int64
	// RequireSigned makes the directory response's own signatures mandatory: only
	// keys that signed the response (tag "http-message-signatures-directory",
	// covering "@authority";req, keyid = the key's thumbprint) are used.
	//
	// Default false. The draft makes response signatures RECOMMENDED and their
	// validation a SHOULD, not a MUST; signatures that are present are always
	// validated, and a key whose signature fails is dropped (the draft's "ignore
	// keys ... that do not have a corresponding valid signature"), so the
	// default only tolerates directories that do not sign at all. The directory is
	// fetched over https from an agent the operator allowed, which already
	// authenticates it; set RequireSigned once the crawlers one accepts all sign.
	RequireSigned bool
}

// Directory fetches and caches key directories
// (draft-meunier-http-message-signatures-directory). It is safe for concurrent
// use; one fetch per agent runs at a time and at most 8 in all.
type Directory struct {
	o      DirectoryOptions
	client *http.Client
	now    func() time.Time // injected by tests
	sem    chan struct{}    // bounds fetches in flight

	mu      sync.Mutex
	entries map[string]*dirEntry
	lru     *list.List // of *dirEntry, most recently used at the front
}

// dirEntry is one agent's cached directory, failure, or fetch in flight.
type dirEntry struct {
	agent    string
	keys     map[string]ed25519.PublicKey // by thumbprint
	err      error                        // cached failure, wraps ErrDirectory
	expires  time.Time                    // zero until the first fetch finishes
	fetching chan struct{}                // non-nil while a fetch runs; closed when done
	elem     *list.Element
}

// NewDirectory returns a Directory with o's defaults filled in.
func NewDirectory(o DirectoryOptions) *Directory {
	if o.TTL <= 0 {
		o.TTL = defaultTTL
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = defaultNegativeTTL
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = defaultMaxEntries
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultMaxBytes
	}
	return &Directory{
		o:       o,
		client:  fetchClient(o.Client, o.AllowPrivate),
		now:     time.Now,
		sem:     make(chan struct{}, maxConcurrentFetch),
		entries: make(map[string]*dirEntry),
		lru:     list.New(),
	}
}

// fetchClient copies c (or builds the default client) with the redirect policy,
// timeout and private-address guard.
func fetchClient(c *http.Client, allowPrivate bool) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	if out.Timeout == 0 {
		out.Timeout = defaultFetchTimeout
	}
	if out.CheckRedirect == nil {
		out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to non-https %s", req.URL.Redacted())
			}
			return nil
		}
	}
	if allowPrivate {
		return &out
	}
	var tr *http.Transport
	switch t := out.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return &out
	}
	dialer := &net.Dialer{Timeout: defaultFetchTimeout, Control: refusePrivate}
	tr.DialContext = dialer.DialContext
	tr.Proxy = nil // a proxy would dial for us and bypass the guard
	out.Transport = tr
	return &out
}

// refusePrivate is a net.Dialer Control hook: it runs after DNS resolution, on
// the address actually dialled, so DNS rebinding cannot slip past it.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !publicAddr(ip) {
		return fmt.Errorf("dial %s: refusing non-public address", address)
	}
	return nil
}

// cgnat is the shared address space (RFC 6598), private in practice.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

// maxAgentBytes bounds an agent URL: a DNS name is at most 253 bytes.
const maxAgentBytes = 512

// NormalizeAgent checks a Web Bot Auth agent (a Signature-Agent value, or an
// agent in an operator's crawler list) and returns its canonical form
// "https://host[:port]": the scheme and host lowercased, the default port 443
// dropped (so "https://Crawler.Example:443/" is "https://crawler.example"), any
// other port written without leading zeros, an IPv6 literal in its canonical
// text form. Only a bare https origin is accepted: the directory lives at the
// origin's well-known path (RFC 8615), so a path (other than a trailing "/"),
// query, fragment, userinfo or percent-encoding has no meaning and is refused
// rather than ignored. The error says what is wrong.
//
// Every agent this package compares, caches, passes to DirectoryOptions.Allowed
// or reports in Identity.Agent is in this form; callers matching agents (the bot
// stage's crawler list) must normalise with it too.
func NormalizeAgent(agent string) (string, error) {
	q := quoteAgent(agent)
	if len(agent) > maxAgentBytes {
		return "", fmt.Errorf("agent %s: longer than %d bytes", q, maxAgentBytes)
	}
	if strings.ContainsAny(agent, "%\\") {
		return "", fmt.Errorf("agent %s: percent-encoding and backslashes not allowed", q)
	}
	u, err := url.Parse(agent)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("agent %s: not a URL: %v", q, err)
	}
	switch {
	case u.Scheme == "":
		return "", fmt.Errorf("agent %s: no scheme, want https://host", q)
	case u.Scheme != "https":
		return "", fmt.Errorf("agent %s: scheme %s, want https", q, u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "", fmt.Errorf("agent %s: no host", q)
	case u.User != nil:
		return "", fmt.Errorf("agent %s: userinfo not allowed", q)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("agent %s: path %q not allowed, want a bare origin", q, u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("agent %s: query not allowed", q)
	case u.Fragment != "" || strings.Contains(agent, "#"):
		return "", fmt.Errorf("agent %s: fragment not allowed", q)
	}
	host := strings.ToLower(u.Hostname())
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("agent %s: invalid IPv6 literal", q)
		}
		host = "[" + ip.String() + "]"
	} else if host == "" || strings.Trim(host, ".") == "" {
		return "", fmt.Errorf("agent %s: no host", q)
	} else {
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", fmt.Errorf("agent %s: invalid character %q in host", q, c)
			}
		}
	}
	port := u.Port()
	if port == "" && strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("agent %s: empty port", q)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf("agent %s: invalid port %q", q, port)
		}
		if n != 443 {
			host += ":" + strconv.FormatUint(n, 10)
		}
	}
	return "https://" + host, nil
}

// quoteAgent quotes an agent for an error message, clipped: it may be hostile.
func quoteAgent(agent string) string {
	if len(agent) > 80 {
		return strconv.Quote(agent[:80]) + "..."
	}
	return strconv.Quote(agent)
}

// Key returns the agent's key with that keyid (fetching the directory at most
// once at a time per agent: concurrent callers wait for the same fetch; ctx
// bounds the wait, not the fetch, which runs to completion under the client's
// timeout so that its result is cached for the next request).
//
// Errors wrap ErrNotAllowed (agent not allowed, nothing fetched), ErrDirectory
// (fetch failed now or within NegativeTTL, or ctx ended first), ErrUnknownKey
// (directory fetched, no such key) or ErrInvalid (agent is not an https origin).
func (d *Directory) Key(ctx context.Context, agent, keyid string) (ed25519.PublicKey, error) {
	origin, err := NormalizeAgent(agent)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if d.o.Allowed == nil || !d.o.Allowed(origin) {
		return nil, fmt.Errorf("signature agent %s: %w", origin, ErrNotAllowed)
	}
	for {
		d.mu.Lock()
		e := d.entries[origin]
		now := d.now()
		if e != nil && e.fetching == nil && now.Before(e.expires) {
			d.lru.MoveToFront(e.elem)
			keys, ferr := e.keys, e.err
			d.mu.Unlock()
			if ferr != nil {
				return nil, ferr
			}
			if pub, ok := keys[keyid]; ok {
				return pub, nil
			}
			return nil, fmt.Errorf("signature agent %s: keyid %q not in directory: %w", origin, keyid, ErrUnknownKey)
		}
		if e == nil {
			e = &dirEntry{agent: origin}
			e.elem = d.lru.PushFront(e)
			d.entries[origin] = e
		}
		ch := e.fetching
		if ch == nil {
			ch = make(chan struct{})
			e.fetching = ch
			d.evictLocked() // after marking e as fetching, so it is spared
			go d.fetch(e, ch)
		}
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("signature agent %s: waiting for directory: %w: %w", origin, ErrDirectory, ctx.Err())
		}
	}
}

// evictLocked drops least recently used entries beyond MaxEntries, sparing
// fetches in flight (their goroutine still holds the entry).
func (d *Directory) evictLocked() {
	for el := d.lru.Back(); el != nil && len(d.entries) > d.o.MaxEntries; {
		prev := el.Prev()
		e := el.Value.(*dirEntry)
		if e.fetching == nil {
			d.lru.Remove(el)
			delete(d.entries, e.agent)
		}
		el = prev
	}
}

// Cached reports whether the agent's directory is cached (fresh, or a cached
// failure): verifying a request naming it will not fetch.
func (d *Directory) Cached(agent string) bool {
	origin, err := NormalizeAgent(agent)
	if err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[origin]
	return e != nil && e.fetching == nil && d.now().Before(e.expires)
}

// allowed reports whether agent is a valid origin that may be fetched.
func (d *Directory) allowed(agent string) (string, bool) {
	origin, err := NormalizeAgent(agent)
	if err != nil || d.o.Allowed == nil || !d.o.Allowed(origin) {
		return "", false
	}
	return origin, true
}

// fetch refreshes e and wakes its waiters. It runs on its own goroutine with a
// background context: the client timeout bounds it, and its result outlives the
// request that triggered it.
func (d *Directory) fetch(e *dirEntry, done chan struct{}) {
	d.sem <- struct{}{}
	keys, ttl, err := d.fetchDirectory(e.agent)
	<-d.sem
	d.mu.Lock()
	if err != nil {
		e.keys, e.err = nil, fmt.Errorf("signature agent %s: %w: %w", e.agent, ErrDirectory, err)
		ttl = d.o.NegativeTTL
	} else {
		e.keys, e.err = keys, nil
	}
	e.expires = d.now().Add(ttl)
	e.fetching = nil
	d.mu.Unlock()
	close(done)
}

// jwks is the directory document: a JWK Set (RFC 7517 §5).
type jwks struct {
	Keys []struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
	} `json:"keys"`
}

// fetchDirectory GETs and parses one directory.
func (d *Directory) fetchDirectory(origin string) (map[string]ed25519.PublicKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, origin+WellKnownPath, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", DirectoryMediaType+", application/json;q=0.9")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != DirectoryMediaType && mt != "application/json") {
		return nil, 0, fmt.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, d.o.MaxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading: %w", err)
	}
	if int64(len(body)) > d.o.MaxBytes {
		return nil, 0, fmt.Errorf("larger than %d bytes", d.o.MaxBytes)
	}
	var doc jwks
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, 0, fmt.Errorf("parsing: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey)
	for _, k := range doc.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue // other key types are not ours to use
		}
		x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue // a malformed entry is skipped, the rest still serve
		}
		pub := ed25519.PublicKey(x)
		keys[Thumbprint(pub)] = pub
	}
	d.filterSigned(resp, keys)
	return keys, cacheTTL(resp.Header, d.o.TTL), nil
}

// filterSigned validates the directory response's own signatures
// (draft-meunier-http-message-signatures-directory, "Binding keys to the
// directory authority") and removes from keys those the draft says to ignore: a
// key whose signature fails, and with RequireSigned every key that did not sign.
func (d *Directory) filterSigned(resp *http.Response, keys map[string]ed25519.PublicKey) {
	signed := make(map[string]bool)
	failed := make(map[string]bool)
	sigs, err := parseSignatures(resp.Header)
	if err == nil {
		lookup := func(keyid string) (ed25519.PublicKey, error) {
			if pub, ok := keys[keyid]; ok {
				return pub, nil
			}
			return nil, ErrUnknownKey
		}
		m := message{req: resp.Request, resp: resp}
		for i := range sigs {
			rs := &sigs[i]
			if rs.params.Tag != DirectoryTag {
				continue
			}
			if _, ok := keys[rs.params.KeyID]; !ok {
				continue
			}
			s, err := checkSignature(m, rs, lookup, d.now(), checkOpts{skew: defaultSkew})
			if err == nil && s.Covers(`"@authority";req`) {
				signed[rs.params.KeyID] = true
			} else {
				failed[rs.params.KeyID] = true
			}
		}
	}
	for id := range keys {
		if failed[id] && !signed[id] || d.o.RequireSigned && !signed[id] {
			delete(keys, id)
		}
	}
}

// cacheTTL is the response's max-age clamped to [minTTL, maxTTL], else def.
func cacheTTL(h http.Header, def time.Duration) time.Duration {
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
			if !ok || !strings.EqualFold(name, "max-age") {
				continue
			}
			var secs int64
			if _, err := fmt.Sscan(strings.Trim(val, `"`), &secs); err != nil || secs < 0 {
				continue
			}
			ttl := time.Duration(min(secs, int64(maxTTL/time.Second))) * time.Second
			return max(minTTL, ttl)
		}
	}
	return def
}
