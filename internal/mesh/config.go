package mesh

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself. It travels as memberlist
// node metadata, JSON encoded, and must fit in [MaxMetaSize] bytes encoded
// (less about 16 bytes the mesh adds); [Start] refuses a Meta that does not.
type Meta struct {
	Region   string `json:"region,omitempty"`
	Provider string `json:"provider,omitempty"`
	FetchURL string `json:"fetch,omitempty"` // base URL where peers fetch bundles by hash
	// Key is the node's public key (the node package's text form), with which its signed
	// reports are checked.
	Key string `json:"key,omitempty"`
	// Report is the node's latest signed health report, opaque to the mesh (the node
	// package defines it). Metadata is memberlist's one piece of per-member state that
	// every member holds and push/pull keeps in sync, so a report placed here reaches
	// nodes that join or return later, with no periodic re-sending. See [Mesh.SetMeta].
	Report json.RawMessage `json:"report,omitempty"`
}

// MaxMetaSize is the largest encoded [Meta], in bytes (memberlist's limit on
// node metadata).
const MaxMetaSize = memberlist.MetaMaxSize

// Delegate is the node's side of the mesh.
//
// Concurrency contract: its methods are called from memberlist goroutines
// (the UDP packet handler, TCP push/pull handlers). They must not block: hand
// any slow work to another goroutine. They may be called concurrently with
// each other and with themselves. They must not call back into [Mesh] methods
// that wait on the network ([Mesh.Leave], [Mesh.Shutdown]).
type Delegate interface {
	// Digest returns what this node runs, sent in push/pull exchanges
	// (anti-entropy) and on join. A zero Announcement (empty Hash) means the
	// node runs nothing yet and sends no digest.
	Digest() Announcement
	// Heard is called for every valid announcement or remote digest received
	// (gossip or push/pull), including duplicates and ones for bundles the
	// node already runs; the node decides what to do. Malformed messages are
	// dropped before they reach Heard.
	Heard(a Announcement)
}

// Config describes one mesh node. The zero value is not usable: Name, Bind and
// Delegate are required. [Start] validates it and does not modify or retain it
// beyond copying.
type Config struct {
	// Name is this node's unique name in the mesh: 1 to 128 bytes of UTF-8
	// with no spaces or control characters. Two live nodes with one name
	// confuse membership.
	Name string
	// Bind is the host:port to listen on for gossip, both UDP and TCP. The
	// host must be an IP address (0.0.0.0 for all). Port 0 picks a free port,
	// which is then also the advertised port; read it back with [Mesh.Addr].
	Bind string
	// Advertise is the host:port other nodes use to reach this one (behind
	// NAT, for instance). Default: Bind. The host must be an IP address.
	Advertise string
	// Join lists peers (host:port) to join. Empty is fine for the first node.
	// Joining happens in the background: a failed attempt is logged and
	// retried every RetryJoin until at least one peer answers.
	Join []string
	// RetryJoin is the wait between join attempts. Default 5s.
	RetryJoin time.Duration
	// Key is the shared gossip encryption key (AES-GCM), 16, 24 or 32 bytes.
	// nil disables encryption and authentication of gossip: for tests and
	// local demos only, since anyone who can reach Bind can then join the
	// mesh and inject announcements.
	Key []byte
	// Meta is published to the other nodes; at most MaxMetaSize bytes encoded.
	Meta Meta
	// Delegate receives what the mesh hears and supplies this node's digest.
	// Required.
	Delegate Delegate
	// Logger receives the mesh's logs. Default slog.Default().
	Logger *slog.Logger
	// Fast shrinks memberlist's timers for tests and local demos on one
	// machine: memberlist.DefaultLocalConfig, then probe every 200ms with a
	// 100ms timeout, gossip every 50ms, push/pull every 1s, suspicion
	// multiplier 3 (max multiplier 4), and gossip to dead nodes for 5s. A
	// shut-down node is then declared dead in about 1 to 3 seconds. Without
	// Fast the base is memberlist.DefaultLANConfig (probe 1s, gossip 200ms,
	// push/pull 30s, suspicion multiplier 4): right for real networks.
	Fast bool
	// PushPullInterval overrides how often each node runs a full TCP state
	// exchange (anti-entropy) with one random peer. 0 keeps the base
	// config's value (30s LAN, 1s Fast). Smaller heals missed announcements
	// sooner at the cost of more TCP traffic.
	PushPullInterval time.Duration
	// ProbeInterval overrides how often a node probes one random peer (0 keeps the base:
	// 1s LAN, 200ms Fast), and SuspicionMult how many probe intervals (times log10 of the
	// mesh size) a suspected node has to refute before it is declared dead (0 keeps 4 LAN,
	// 3 Fast). Smaller values detect a dead node sooner, so that DNS stops naming it sooner,
	// at the cost of more probes and of declaring slow-but-alive nodes dead on a poor network.
	ProbeInterval time.Duration
	SuspicionMult int
	// OnChange, if set, is called after a member joins, leaves, dies or changes its
	// metadata, from memberlist's goroutines with its lock held: it must return at once
	// (signal a channel, never block or call back into the Mesh).
	OnChange func()
}

// Default values applied by [Start].
const (
	// DefaultRetryJoin is the wait between join attempts when Config.RetryJoin is 0.
	DefaultRetryJoin = 5 * time.Second
)

// hostPort is a parsed host:port whose host is an IP address.
type hostPort struct {
	ip   string
	port int
}

// parseHostPort parses s as ip:port.
func parseHostPort(s string) (hostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, err
	}
	if net.ParseIP(host) == nil {
		return hostPort{}, fmt.Errorf("host %q is not an IP address", host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return hostPort{}, fmt.Errorf("port %q: not a number in 0..65535", port)
	}
	return hostPort{ip: host, port: int(p)}, nil
}

// validateName checks a node name.
func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%d bytes, limit %d", len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%q contains a space or control character", name)
		}
	}
	return nil
}

// wireMeta is Meta as sent in memberlist node metadata, plus what the mesh
// itself needs to say about a node.
type wireMeta struct {
	Meta
	// Leaving is set just before a graceful leave, so that peers can tell
	// "left" from "dead": memberlist reports both the same way.
	Leaving bool `json:"leaving,omitempty"`
}

// CheckMeta reports whether m fits in node metadata in every form the mesh sends it
// (including the one that marks a graceful leave).
func CheckMeta(m Meta) error {
	_, err := encodeMeta(wireMeta{Meta: m, Leaving: true})
	return err
}

// encodeMeta encodes m and checks it against MaxMetaSize.
func encodeMeta(m wireMeta) ([]byte, error) {
	if len(m.FetchURL) > MaxURLLen {
		return nil, fmt.Errorf("fetch: %d bytes, limit %d", len(m.FetchURL), MaxURLLen)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("encoded %d bytes, limit %d", len(b), MaxMetaSize)
	}
	return b, nil
}

// decodeMeta decodes node metadata; empty input is an empty Meta.
func decodeMeta(b []byte) (wireMeta, error) {
	var m wireMeta
	if len(b) == 0 {
		return m, nil
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

// settings is a validated Config plus what was derived from it.
type settings struct {
	Config
	bind      hostPort
	advertise *hostPort
	meta      []byte // encoded Meta
	leaving   []byte // encoded Meta with Leaving set
}

// validate checks c, applies defaults, and returns the result. Errors name
// the offending field.
func validate(c Config) (settings, error) {
	s := settings{Config: c}
	if err := validateName(c.Name); err != nil {
		return s, fmt.Errorf("mesh: config Name: %w", err)
	}
	if c.Bind == "" {
		return s, fmt.Errorf("mesh: config Bind: empty, want ip:port")
	}
	bind, err := parseHostPort(c.Bind)
	if err != nil {
		return s, fmt.Errorf("mesh: config Bind %q: %w", c.Bind, err)
	}
	s.bind = bind
	if c.Advertise != "" {
		adv, err := parseHostPort(c.Advertise)
		if err != nil {
			return s, fmt.Errorf("mesh: config Advertise %q: %w", c.Advertise, err)
		}
		s.advertise = &adv
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return s, fmt.Errorf("mesh: config Join[%d] %q: %w", i, j, err)
		}
	}
	s.Join = append([]string(nil), c.Join...)
	if c.RetryJoin < 0 {
		return s, fmt.Errorf("mesh: config RetryJoin: negative (%v)", c.RetryJoin)
	}
	if c.RetryJoin == 0 {
		s.RetryJoin = DefaultRetryJoin
	}
	if c.Key != nil {
		switch len(c.Key) {
		case 16, 24, 32:
		default:
			return s, fmt.Errorf("mesh: config Key: %d bytes, want 16, 24 or 32 (AES-128/192/256)", len(c.Key))
		}
		s.Key = append([]byte(nil), c.Key...)
	}
	// Check the larger, leaving form so that Leave cannot overflow later.
	leaving, err := encodeMeta(wireMeta{Meta: c.Meta, Leaving: true})
	if err != nil {
		return s, fmt.Errorf("mesh: config Meta: %w", err)
	}
	s.leaving = leaving
	s.meta, _ = encodeMeta(wireMeta{Meta: c.Meta})
	if c.Delegate == nil {
		return s, fmt.Errorf("mesh: config Delegate: nil")
	}
	if c.ProbeInterval != 0 && (c.ProbeInterval < 50*time.Millisecond || c.ProbeInterval > time.Minute) {
		return s, fmt.Errorf("mesh: config ProbeInterval: %v out of range 50ms..1m", c.ProbeInterval)
	}
	if c.SuspicionMult < 0 || c.SuspicionMult > 20 {
		return s, fmt.Errorf("mesh: config SuspicionMult: %d out of range 1..20", c.SuspicionMult)
	}
	if c.PushPullInterval < 0 {
		return s, fmt.Errorf("mesh: config PushPullInterval: negative (%v)", c.PushPullInterval)
	}
	if c.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, nil
}

// memberlistConfig builds memberlist's configuration from s. Delegates and
// logger are set by the caller.
func memberlistConfig(s settings) *memberlist.Config {
	var mc *memberlist.Config
	if s.Fast {
		mc = memberlist.DefaultLocalConfig()      // TCPTimeout 1s, IndirectChecks 1, RetransmitMult 2
		mc.ProbeInterval = 200 * time.Millisecond // probe one peer every 200ms
		mc.ProbeTimeout = 100 * time.Millisecond  // wait 100ms for an ack before indirect probes
		mc.GossipInterval = 50 * time.Millisecond // gossip to GossipNodes (3) peers every 50ms
		mc.PushPullInterval = time.Second         // full state exchange with one peer every 1s
		mc.SuspicionMult = 3                      // suspect for 3*max(1,log10(n))*probe before dead
		mc.SuspicionMaxTimeoutMult = 4            // at most 4x that without confirmations
		mc.GossipToTheDeadTime = 5 * time.Second  // keep telling dead nodes for 5s
		mc.QueueCheckInterval = 5 * time.Second   // broadcast-queue depth check
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	if s.PushPullInterval > 0 {
		mc.PushPullInterval = s.PushPullInterval
	}
	if s.ProbeInterval > 0 {
		mc.ProbeInterval = s.ProbeInterval
		mc.ProbeTimeout = min(mc.ProbeTimeout, s.ProbeInterval/2)
	}
	if s.SuspicionMult > 0 {
		mc.SuspicionMult = s.SuspicionMult
	}
	mc.Name = s.Name
	mc.BindAddr = s.bind.ip
	mc.BindPort = s.bind.port
	if s.advertise != nil {
		mc.AdvertiseAddr = s.advertise.ip
		mc.AdvertisePort = s.advertise.port
	} else {
		mc.AdvertisePort = s.bind.port
	}
	if s.Key != nil {
		mc.SecretKey = s.Key
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	return mc
}
