// Package admin is a node's operator API: purge, status and a health probe, served on the
// admin address (loopback by default) and authenticated with a bearer token.
//
// It reads the data plane's state through narrow accessors and never holds a lock that the
// request path takes, so a slow or hostile admin client cannot slow traffic down.
package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"rhizome/internal/cache"
	"rhizome/internal/cachepolicy"
	"rhizome/internal/snapshot"
	"rhizome/internal/upstream"
)

// Limits on a purge request, so that one call cannot pin the node.
const (
	MaxPurgeItems = 1000    // URLs + prefixes + tags in one request
	MaxBodyBytes  = 1 << 20 // request body
)

// Server serves the admin API. Fields are set before Handler is called and not changed after.
type Server struct {
	Store    *cache.Store              // nil when caching is off
	Snapshot func() *snapshot.Snapshot // the snapshot being served
	// Upstreams reports the live state of the origins (health, latency, errors).
	Upstreams func() []upstream.GroupStatus
	Token     string // bearer token; required, see LoadOrCreateToken
	// Apply receives a signed bundle pushed by an operator (POST /v1/bundle) and returns
	// what the node now runs, or why it refused it. Nil: the node takes no bundles.
	Apply func(bundle []byte) (any, error)
	// Bundle reports the node's bundle state for the status (nil: none).
	Bundle func() any
	// Purged is told of every purge applied through the API, after it was applied here
	// (a mesh node passes it on to the others); nil: nothing to tell.
	Purged func(PurgeRequest)
	// Control receives a signed control record (POST /v1/control: a rollout halt, resume or
	// rollback, or a kill switch) and returns the node's rollout state, or why it refused
	// the record. Nil: the node takes none.
	Control func(record []byte) (any, error)
	// Rollout reports where the newest bundle's rollout stands (GET /v1/rollout).
	Rollout func() any
	// Drain takes the node out of DNS answers or puts it back (POST /v1/drain {"on":
	// bool}). Nil: not a mesh node.
	Drain func(on bool) error
	// Traffic reports the data plane's request counters (proxy.Health); nil: none.
	Traffic func() any
	// Metrics serves GET /metrics (Prometheus text format); nil: not served.
	Metrics http.Handler
	// Dashboard serves the operator's dashboard under GET /dashboard/; nil: not served.
	Dashboard http.Handler
	Logger    *slog.Logger
	Started   time.Time
}

// PurgeRequest is the body of POST /v1/purge. Each list is optional; at least one item is required.
type PurgeRequest struct {
	URLs     []string `json:"urls,omitempty"`     // exact URLs: every stored variant of each
	Prefixes []string `json:"prefixes,omitempty"` // URL prefixes, e.g. "https://example.com/static/"
	Tags     []string `json:"tags,omitempty"`     // Cache-Tag / Surrogate-Key values
}

// PurgeResponse is the answer to a purge: how many stored objects went away.
type PurgeResponse struct {
	Purged int `json:"purged"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	Version   string                 `json:"version"`
	Uptime    string                 `json:"uptime"`
	Sites     []SiteInfo             `json:"sites"`
	Upstreams []upstream.GroupStatus `json:"upstreams"`
	Cache     *cache.Stats           `json:"cache,omitempty"`
	Bundle    any                    `json:"bundle,omitempty"`
	Traffic   any                    `json:"traffic,omitempty"`
}

// SiteInfo describes one served site.
type SiteInfo struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
	Pools []string `json:"pools"`
	Cache bool     `json:"cache"`
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("POST /v1/purge", s.auth(http.HandlerFunc(s.purge)))
	mux.Handle("GET /v1/status", s.auth(http.HandlerFunc(s.status)))
	mux.Handle("POST /v1/bundle", s.auth(http.HandlerFunc(s.bundle)))
	mux.Handle("POST /v1/control", s.auth(http.HandlerFunc(s.control)))
	mux.Handle("GET /v1/rollout", s.auth(http.HandlerFunc(s.rollout)))
	mux.Handle("POST /v1/drain", s.auth(http.HandlerFunc(s.drain)))
	if s.Metrics != nil {
		// Unauthenticated, as Prometheus scrapes expect: counters and states only, no
		// secrets, on the admin address (private by default).
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Dashboard != nil {
		// The page itself is public; it reads /v1/status with the token the operator gives it.
		mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard", s.Dashboard))
		mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	}
	return mux
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || s.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rhizome-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	if s.Store == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "caching is off on this node"})
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	n, err := Purge(s.Store, req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.logger().Info("purge", "urls", len(req.URLs), "prefixes", len(req.Prefixes), "tags", len(req.Tags), "purged", n)
	if s.Purged != nil {
		s.Purged(req)
	}
	writeJSON(w, http.StatusOK, PurgeResponse{Purged: n})
}

// Purge checks every item of req first and, only if all are valid, removes what they name
// from store. A URL or prefix purges both its http and https forms: they are one resource to
// the operator even though the cache keys them apart.
func Purge(store *cache.Store, req PurgeRequest) (int, error) {
	total := len(req.URLs) + len(req.Prefixes) + len(req.Tags)
	if total == 0 {
		return 0, errors.New("nothing to purge: give urls, prefixes or tags")
	}
	if total > MaxPurgeItems {
		return 0, fmt.Errorf("%d items exceed the limit of %d per request", total, MaxPurgeItems)
	}
	var urls, prefixes []string
	for i, raw := range req.URLs {
		keys, err := purgeKeys(raw)
		if err != nil {
			return 0, fmt.Errorf("urls[%d]: %w", i, err)
		}
		urls = append(urls, keys...)
	}
	for i, raw := range req.Prefixes {
		keys, err := purgeKeys(raw)
		if err != nil {
			return 0, fmt.Errorf("prefixes[%d]: %w", i, err)
		}
		prefixes = append(prefixes, keys...)
	}
	for i, t := range req.Tags {
		if strings.TrimSpace(t) == "" {
			return 0, fmt.Errorf("tags[%d]: empty tag", i)
		}
	}
	n := 0
	for _, k := range urls {
		n += store.PurgeURL(k)
	}
	for _, p := range prefixes {
		n += store.PurgePrefix(p)
	}
	for _, t := range req.Tags {
		n += store.PurgeTag(strings.TrimSpace(t))
	}
	return n, nil
}

// purgeKeys turns an operator's URL into the cache keys of its http and https forms.
func purgeKeys(raw string) ([]string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q: want an absolute http(s) URL such as https://example.com/path", raw)
	}
	var keys []string
	for _, scheme := range []string{"http", "https"} {
		k, err := cachepolicy.CacheKey(scheme, u.Host, u)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", raw, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// MaxPushBytes bounds a pushed bundle (the bundle package refuses larger ones too, with a
// clearer message; this only stops a client from streaming forever).
const MaxPushBytes = 8 << 20

func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	if s.Apply == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node takes no bundles (rhizome proxy mode)"})
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxPushBytes+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	res, err := s.Apply(b)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if s.Control == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node takes no control records (rhizome proxy mode)"})
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	res, err := s.Control(b)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// DrainRequest is the body of POST /v1/drain.
type DrainRequest struct {
	On bool `json:"on"`
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	if s.Drain == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node is not a mesh node (rhizome proxy mode)"})
		return
	}
	var req DrainRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body: want {"on": true} or {"on": false}`})
		return
	}
	if err := s.Drain(req.On); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, req)
}

func (s *Server) rollout(w http.ResponseWriter, r *http.Request) {
	if s.Rollout == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node has no rollouts (rhizome proxy mode)"})
		return
	}
	writeJSON(w, http.StatusOK, s.Rollout())
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := Status{Uptime: time.Since(s.Started).Round(time.Second).String()}
	if s.Snapshot != nil {
		snap := s.Snapshot()
		st.Version = snap.Version
		for _, site := range snap.Sites() {
			info := SiteInfo{Name: site.Name, Hosts: site.Hosts, Cache: site.CacheEnabled}
			for _, p := range site.Pools {
				info.Pools = append(info.Pools, p.Name)
			}
			st.Sites = append(st.Sites, info)
		}
	}
	if s.Upstreams != nil {
		st.Upstreams = s.Upstreams()
	}
	if s.Bundle != nil {
		st.Bundle = s.Bundle()
	}
	if s.Traffic != nil {
		st.Traffic = s.Traffic()
	}
	if s.Store != nil {
		cs := s.Store.Stats()
		st.Cache = &cs
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// TokenFile is the name of the admin token file in a node's data dir.
const TokenFile = "admin.token"

// LoadOrCreateToken returns the admin token kept in dir, creating a random one (mode 0600)
// on first use, so that `rhizome purge --data-dir DIR` finds it without a flag.
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	t := NewToken()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	return t, nil
}

// NewToken returns a random 128-bit token in hex.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
