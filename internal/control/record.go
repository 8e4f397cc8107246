package control

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"rhizome/internal/bundle"
	"rhizome/internal/rollout"
	"rhizome/internal/stages"
)

// Kinds of record.
const (
	KindHalt       = "halt"       // operator: stop the bundle's rollout where it is
	KindResume     = "resume"     // operator: undo earlier halts and unhealthy reports
	KindRollback   = "rollback"   // operator: halt, and nodes running the bundle go back to their last good one
	KindUnhealthy  = "unhealthy"  // node: the bundle made me unhealthy (halts it and rolls it back everywhere)
	KindKillSwitch = "killswitch" // operator: bypass a stage now, on every node, without waves
)

// Stages are the request stages a kill switch can bypass (see docs/rollout.md). A
// switched-off stage is skipped for every request: fail open.
var Stages = stages.Names

// domain separates control signatures from bundle signatures made with the same key.
const domain = "rhizome-control-v1\n"

// Limits that keep a record inside one gossip packet.
const (
	MaxReasonLen = 200
	MaxEncoded   = 1000 // bytes of an encoded Signed record
	// MaxClockSkew is how far in the future a record's time may be: a record dated later
	// could not be overridden (by a resume or kill switch off) until then.
	MaxClockSkew = time.Minute
)

// Record is one control record.
type Record struct {
	Kind   string `json:"kind"`
	Bundle string `json:"bundle,omitempty"` // bundle hash (halt, resume, rollback, unhealthy)
	Serial uint64 `json:"serial,omitempty"` // the bundle's serial, for people reading status
	Stage  string `json:"stage,omitempty"`  // killswitch
	Site   string `json:"site,omitempty"`   // killswitch: one site, or "" for all
	On     bool   `json:"on,omitempty"`     // killswitch: true bypasses the stage
	Node   string `json:"node,omitempty"`   // unhealthy: the reporting node
	Reason string `json:"reason,omitempty"`
	// Counters are the reporter's figures on the bundle (unhealthy).
	Counters *rollout.Counters `json:"counters,omitempty"`
	At       int64             `json:"at"`            // unix milliseconds on the signer's clock; the latest record wins
	KeyID    string            `json:"key_id"`        // the signing key's id
	Pub      string            `json:"pub,omitempty"` // unhealthy: the node's public key ("ed25519:...")
}

// Signed is a record as it travels: the body bytes exactly as signed and the signature.
type Signed struct {
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// ID is the record's identity: the hex SHA-256 of its body.
func (s Signed) ID() string {
	sum := sha256.Sum256(s.Body)
	return hex.EncodeToString(sum[:])
}

// Encode returns the wire form (JSON).
func (s Signed) Encode() []byte {
	b, _ := json.Marshal(s)
	return b
}

var (
	hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Check checks the record's fields (not its signature). Errors name the field.
func (r *Record) Check() error {
	switch r.Kind {
	case KindHalt, KindResume, KindRollback, KindUnhealthy:
		if !hashRE.MatchString(r.Bundle) {
			return errors.New("bundle: want a bundle hash (64 hex digits)")
		}
	case KindKillSwitch:
		if !slices.Contains(Stages, r.Stage) {
			return fmt.Errorf("stage: %q: want one of %v", short(r.Stage), Stages)
		}
		if r.Site != "" && !nameRE.MatchString(r.Site) {
			return fmt.Errorf("site: %q: not a site name", short(r.Site))
		}
	default:
		return fmt.Errorf("kind: %q: want halt, resume, rollback, unhealthy or killswitch", short(r.Kind))
	}
	if r.Kind == KindUnhealthy {
		if !nameRE.MatchString(r.Node) {
			return fmt.Errorf("node: %q: not a node name", short(r.Node))
		}
		if r.Pub == "" {
			return errors.New("pub: a node report carries the node's public key")
		}
	}
	if len(r.Reason) > MaxReasonLen {
		return fmt.Errorf("reason: %d bytes, limit %d", len(r.Reason), MaxReasonLen)
	}
	if r.At <= 0 {
		return errors.New("at: required")
	}
	return nil
}

// Time returns At as a time.
func (r *Record) Time() time.Time { return time.UnixMilli(r.At) }

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Sign fills KeyID (and Pub for node reports) and signs r with key.
func Sign(r Record, key ed25519.PrivateKey) (Signed, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Signed{}, errors.New("control: not an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	r.KeyID = bundle.KeyID(pub)
	if r.Kind == KindUnhealthy {
		r.Pub = bundle.FormatPublicKey(pub)
	}
	// Invalid UTF-8 would be marshalled as \ufffd escapes, and a cut inside a rune would
	// leave some: the body would then not be canonical (nor the reason within the limit)
	// once decoded, and Verify would refuse the record.
	r.Reason = strings.ToValidUTF8(r.Reason, "\uFFFD")
	if len(r.Reason) > MaxReasonLen {
		n := MaxReasonLen
		for n > 0 && !utf8.RuneStart(r.Reason[n]) {
			n--
		}
		r.Reason = r.Reason[:n]
	}
	if err := r.Check(); err != nil {
		return Signed{}, fmt.Errorf("control: %w", err)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return Signed{}, fmt.Errorf("control: %w", err)
	}
	s := Signed{Body: body, Sig: ed25519.Sign(key, append([]byte(domain), body...))}
	if len(s.Encode()) > MaxEncoded {
		return Signed{}, fmt.Errorf("control: encoded record exceeds %d bytes", MaxEncoded)
	}
	return s, nil
}

// Decode reads the wire form strictly.
func Decode(b []byte) (Signed, error) {
	var s Signed
	if len(b) > MaxEncoded {
		return s, fmt.Errorf("control: %d bytes exceed the limit of %d", len(b), MaxEncoded)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("control: %w", err)
	}
	// Not dec.More, which reports a trailing '}' or ']' as no more data.
	if _, err := dec.Token(); err != io.EOF {
		return s, errors.New("control: data after the record")
	}
	return s, nil
}

// Verifier decides whether records are authentic.
type Verifier struct {
	// Trust holds the operator keys; operator records need a signature by one of them.
	Trust bundle.Trust
	// NodeKey returns the public key node name publishes in the mesh, if known. A node
	// report whose key differs from the published one is refused; one from a node no
	// longer known (it may have died of the bundle) is checked against the key it carries.
	NodeKey func(name string) (ed25519.PublicKey, bool)
	// RequireKnownNode refuses node reports from names NodeKey does not know: otherwise
	// anyone could mint reports under invented names (each a valid signature by a key it
	// made up) and crowd real records out of a Set. Records read back from the data dir
	// are checked without it, since their reporters may have left since.
	RequireKnownNode bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Verify checks s and returns its record. Errors say why.
func (v Verifier) Verify(s Signed) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("control: body: %w", err)
	}
	if canon, _ := json.Marshal(r); !bytes.Equal(canon, s.Body) {
		return nil, errors.New("control: body not in canonical form")
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if r.Time().After(now().Add(MaxClockSkew)) {
		return nil, fmt.Errorf("control: at: %s is more than %s in the future", r.Time().UTC().Format(time.RFC3339), MaxClockSkew)
	}
	var pub ed25519.PublicKey
	if r.Kind == KindUnhealthy {
		p, err := bundle.ParsePublicKey(r.Pub)
		if err != nil {
			return nil, fmt.Errorf("control: pub: %w", err)
		}
		if bundle.KeyID(p) != r.KeyID {
			return nil, errors.New("control: key_id does not match pub")
		}
		var known ed25519.PublicKey
		ok := false
		if v.NodeKey != nil {
			known, ok = v.NodeKey(r.Node)
		}
		if ok && !known.Equal(p) {
			return nil, fmt.Errorf("control: node %s publishes another key than the one this report carries", r.Node)
		}
		if !ok && v.RequireKnownNode {
			return nil, fmt.Errorf("control: node %s is not a member this node knows", short(r.Node))
		}
		pub = p
	} else {
		p, ok := v.Trust.Keys[r.KeyID]
		if !ok {
			return nil, fmt.Errorf("control: signed by %s, not a trusted operator key", short(r.KeyID))
		}
		pub = p
	}
	if !ed25519.Verify(pub, append([]byte(domain), s.Body...), s.Sig) {
		return nil, errors.New("control: bad signature")
	}
	return &r, nil
}
