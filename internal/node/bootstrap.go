package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"rhizome/internal/bots"
	"rhizome/internal/bundle"
	"rhizome/internal/bytesize"
	"rhizome/internal/control"
	"rhizome/internal/mesh"
	"rhizome/internal/stages"
)

// MaxBootstrapBytes bounds the bootstrap file.
const MaxBootstrapBytes = 64 << 10

// Bootstrap is a node's own configuration: the only per-node file. Everything a site needs
// comes in signed bundles.
type Bootstrap struct {
	Name     string `yaml:"name"`     // unique in the mesh: letters, digits, '-'
	Region   string `yaml:"region"`   // e.g. eu-west; shown in status; DNS answers prefer nodes of the client's region
	Provider string `yaml:"provider"` // e.g. hetzner; the docs advise spreading nodes across providers
	DataDir  string `yaml:"data_dir"` // bundles, cache, admin token
	// Key is the node's private key file (rhizome keygen), which signs its health reports.
	// Default: data_dir/node.key, created on first start.
	Key    string `yaml:"key"`
	Listen string `yaml:"listen"` // client traffic; default 127.0.0.1:8080
	Admin  string `yaml:"admin"`  // admin API; default 127.0.0.1:9090
	// DNS is where the node answers as an authoritative nameserver for the bundle's zones,
	// UDP and TCP (e.g. 0.0.0.0:53); absent: no DNS.
	DNS string `yaml:"dns"`
	// DNSRateLimit is the UDP responses per second per client /24 or /56 before responses
	// slip (response rate limiting, against reflection); 0: 100; -1: off.
	DNSRateLimit int   `yaml:"dns_rate_limit"`
	AccessLog    *bool `yaml:"access_log"`
	Cache        struct {
		Memory string `yaml:"memory"` // default 256MiB
		Disk   string `yaml:"disk"`   // default 1GiB
	} `yaml:"cache"`
	Trust struct {
		Keys     []string `yaml:"keys"`     // operator public keys, "ed25519:..." (rhizome keygen)
		Required int      `yaml:"required"` // signatures a bundle needs; default 1
	} `yaml:"trust"`
	// Mesh joins the node to its peers. Absent: a standalone node that takes bundles only
	// through its admin API.
	Mesh *MeshConfig `yaml:"mesh"`
	// Bots reaches the bot stage's DNS resolver and key-directory client: set by programs
	// that embed a node (tests, the demo), never from the file.
	Bots bots.Options `yaml:"-"`
	// WrapStage, when set, wraps each request stage before the driver gets it: the demo
	// uses it to inject a latent bug into the bot stage. Never from the file.
	WrapStage func(stages.Stage) stages.Stage `yaml:"-"`

	trust       bundle.Trust
	memory, dsk int64
	meshKey     []byte
}

// MeshConfig is the bootstrap's mesh section.
type MeshConfig struct {
	Bind      string   `yaml:"bind"`      // gossip address, UDP and TCP, e.g. 0.0.0.0:7946
	Advertise string   `yaml:"advertise"` // address peers reach us at; default bind
	Fetch     string   `yaml:"fetch"`     // HTTP address serving our bundles to peers by hash
	FetchURL  string   `yaml:"fetch_url"` // URL peers use for it; default http://<fetch>
	Join      []string `yaml:"join"`      // peers to join; none for the first node
	Key       string   `yaml:"key"`       // gossip encryption key, base64 of 16, 24 or 32 bytes
	// FastTimers shrinks failure detection and gossip timers to local-network values, for
	// demos and tests on one machine; never on a real network.
	FastTimers bool `yaml:"fast_timers"`
	// ProbeInterval and SuspicionMult tune failure detection (see docs/dns.md): shorter
	// detects a dead node sooner, and DNS drops it sooner, at the cost of false alarms on a
	// poor network. Defaults: memberlist's LAN values, 1s and 4.
	ProbeInterval string `yaml:"probe_interval"`
	SuspicionMult int    `yaml:"suspicion_mult"`

	probe time.Duration
}

// LoadBootstrap reads and checks a bootstrap file. Unknown keys are errors.
func LoadBootstrap(path string) (*Bootstrap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseBootstrap(b)
}

// ParseBootstrap decodes and checks a bootstrap file's bytes.
func ParseBootstrap(b []byte) (*Bootstrap, error) {
	if len(b) > MaxBootstrapBytes {
		return nil, fmt.Errorf("bootstrap: %d bytes exceed the limit of %d", len(b), MaxBootstrapBytes)
	}
	var bs Bootstrap
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&bs); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if bs.Name == "" || strings.Trim(bs.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" || len(bs.Name) > 63 {
		bad("name", "%q: required, letters, digits and '-', at most 63", bs.Name)
	}
	if bs.DataDir == "" {
		bad("data_dir", "required: the node keeps its last-known-good bundle there")
	}
	if bs.Listen == "" {
		bs.Listen = "127.0.0.1:8080"
	}
	if bs.Admin == "" {
		bs.Admin = "127.0.0.1:9090"
	}
	if bs.DNS != "" {
		if _, _, err := net.SplitHostPort(bs.DNS); err != nil {
			bad("dns", "%q: want host:port, e.g. 0.0.0.0:53", bs.DNS)
		}
	}
	bs.memory, bs.dsk = 256<<20, 1<<30
	if bs.Cache.Memory != "" {
		n, err := bytesize.Parse(bs.Cache.Memory)
		if err != nil {
			bad("cache.memory", "%v", err)
		}
		bs.memory = n
	}
	if bs.Cache.Disk != "" {
		n, err := bytesize.Parse(bs.Cache.Disk)
		if err != nil {
			bad("cache.disk", "%v", err)
		}
		bs.dsk = n
	}
	bs.trust = bundle.Trust{Keys: map[string]ed25519.PublicKey{}, Required: bs.Trust.Required}
	if len(bs.Trust.Keys) == 0 {
		bad("trust.keys", "at least one operator public key is required (rhizome keygen)")
	}
	for i, k := range bs.Trust.Keys {
		pub, err := bundle.ParsePublicKey(k)
		if err != nil {
			bad(fmt.Sprintf("trust.keys[%d]", i), "%v", err)
			continue
		}
		bs.trust.Keys[bundle.KeyID(pub)] = pub
	}
	if bs.trust.Required == 0 {
		bs.trust.Required = 1
	}
	if bs.trust.Required < 1 || bs.trust.Required > len(bs.Trust.Keys) {
		bad("trust.required", "%d out of range 1..%d (the number of keys)", bs.Trust.Required, len(bs.Trust.Keys))
	}
	if m := bs.Mesh; m != nil {
		if _, _, err := net.SplitHostPort(m.Bind); err != nil {
			bad("mesh.bind", "%q: want host:port", m.Bind)
		}
		if m.Advertise == "" {
			m.Advertise = m.Bind
		}
		if _, _, err := net.SplitHostPort(m.Fetch); err != nil {
			bad("mesh.fetch", "%q: want host:port (peers fetch bundles there)", m.Fetch)
		}
		if m.FetchURL == "" {
			m.FetchURL = "http://" + m.Fetch
		}
		if u, err := url.Parse(m.FetchURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("mesh.fetch_url", "%q: want an http(s) URL", m.FetchURL)
		}
		for i, j := range m.Join {
			if _, _, err := net.SplitHostPort(j); err != nil {
				bad(fmt.Sprintf("mesh.join[%d]", i), "%q: want host:port", j)
			}
		}
		if m.ProbeInterval != "" {
			d, err := time.ParseDuration(m.ProbeInterval)
			if err != nil || d < 50*time.Millisecond || d > time.Minute {
				bad("mesh.probe_interval", "%q: want a duration in 50ms..1m, e.g. 500ms", m.ProbeInterval)
			}
			m.probe = d
		}
		if m.SuspicionMult < 0 || m.SuspicionMult > 20 {
			bad("mesh.suspicion_mult", "%d: want 1..20 (0 for the default 4)", m.SuspicionMult)
		}
		if err := checkMetaBudget(&bs); err != nil {
			bad("name, region, provider, mesh.fetch_url", "%v: together they must leave room for the node's signed health report in its 512-byte mesh metadata; shorten them", err)
		}
		if m.Key != "" {
			k, err := base64.StdEncoding.DecodeString(m.Key)
			if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
				bad("mesh.key", "want base64 of 16, 24 or 32 random bytes (head -c 32 /dev/urandom | base64)")
			}
			bs.meshKey = k
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("bootstrap: %w", errors.Join(errs...))
	}
	return &bs, nil
}

// checkMetaBudget builds the largest metadata this node could publish (its report with every
// figure at its maximum) and checks that memberlist can carry it.
func checkMetaBudget(bs *Bootstrap) error {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	r := control.Report{Node: bs.Name, Bundle: strings.Repeat("f", 64), Serial: math.MaxUint64, Healthy: true, Draining: true, Load: 3,
		Figures: [4]uint64{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}, At: math.MaxInt64}
	raw, err := control.SignReport(r, key)
	if err != nil {
		return err
	}
	return mesh.CheckMeta(mesh.Meta{Region: bs.Region, Provider: bs.Provider, FetchURL: bs.Mesh.FetchURL,
		Key: bundle.FormatPublicKey(key.Public().(ed25519.PublicKey)), Report: raw})
}
