package mesh

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// MsgPurge is a gossiped [Purge], JSON encoded. (Message types are append only.)
const MsgPurge MsgType = 3

// Purge is an operator's cache purge travelling the mesh, so that one `rhizome purge` on
// any node reaches every node. Purges are not signed: the gossip key already restricts the
// mesh to its members, and the worst a forged purge can do is cost cache misses.
type Purge struct {
	ID       string   `json:"id"`   // 32 hex digits, random; receivers apply each id once
	From     string   `json:"from"` // the node the operator purged on
	At       int64    `json:"at"`   // unix milliseconds on that node, for catch-up
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
}

// PurgeDelegate is implemented by a Delegate that takes purges. HeardPurge is called
// once per purge id; like Heard it must not block.
type PurgeDelegate interface {
	HeardPurge(p Purge)
}

// Validate checks a purge's form: an id, a sender, at least one item.
func (p Purge) Validate() error {
	if len(p.ID) != 32 {
		return fmt.Errorf("id: want 32 hex digits")
	}
	if _, err := hex.DecodeString(p.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if err := validateName(p.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if len(p.URLs)+len(p.Prefixes)+len(p.Tags) == 0 {
		return errors.New("nothing to purge")
	}
	return nil
}

// EncodedSize is the size of p on the wire; a purge must fit MaxMessageSize, so callers
// split large purges into several.
func (p Purge) EncodedSize() int {
	b, _ := json.Marshal(p)
	return 1 + len(b)
}

func encodePurge(p Purge) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	buf := append([]byte{byte(MsgPurge)}, body...)
	if len(buf) > MaxMessageSize {
		return nil, fmt.Errorf("encoded purge is %d bytes, limit %d: split it", len(buf), MaxMessageSize)
	}
	return buf, nil
}

func decodePurge(buf []byte) (Purge, error) {
	var p Purge
	if len(buf) < 2 || MsgType(buf[0]) != MsgPurge || len(buf) > MaxMessageSize {
		return p, errors.New("not a purge message")
	}
	if err := json.Unmarshal(buf[1:], &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

type purgeBroadcast struct{ msg []byte }

func (b *purgeBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *purgeBroadcast) Message() []byte                       { return b.msg }
func (b *purgeBroadcast) Finished()                             {}

// maxPurgeIDs bounds the ids a mesh remembers to apply and relay each purge once.
const maxPurgeIDs = 4096

// firstPurge records id and reports whether it was new.
func (m *Mesh) firstPurge(id string) bool { return m.purges.add(id, maxPurgeIDs) }

// Purge broadcasts p to the mesh (From defaults to this node). It is applied on this node
// by the caller, not here.
func (m *Mesh) Purge(p Purge) error {
	if m.closed.Load() {
		return ErrShutdown
	}
	if p.From == "" {
		p.From = m.cfg.Name
	}
	buf, err := encodePurge(p)
	if err != nil {
		return err
	}
	m.firstPurge(p.ID)
	m.queue.QueueBroadcast(&purgeBroadcast{msg: buf})
	return nil
}

// notifyPurge handles a gossiped purge: delivered and relayed once per id.
func (m *Mesh) notifyPurge(buf []byte) {
	p, err := decodePurge(buf)
	if err != nil {
		m.stats.malformed.Add(1)
		m.log.Debug("mesh: dropped malformed purge", "err", err)
		return
	}
	if !m.firstPurge(p.ID) {
		return
	}
	if pd, ok := m.cfg.Delegate.(PurgeDelegate); ok {
		pd.HeardPurge(p)
	}
	m.queue.QueueBroadcast(&purgeBroadcast{msg: append([]byte(nil), buf...)})
}
