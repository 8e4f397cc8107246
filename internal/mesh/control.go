package mesh

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/memberlist"
)

// MsgControl is a gossiped control record: an operator's halt, resume, rollback or kill
// switch, or a node's unhealthy report. Its payload is opaque to the mesh (the node
// package signs and checks it); the mesh only delivers and relays each distinct payload
// once. (Message types are append only.)
const MsgControl MsgType = 4

// ControlDelegate is implemented by a Delegate that takes control records. HeardControl is
// called once per distinct payload; like Heard it must not block, and it must not retain
// payload.
type ControlDelegate interface {
	HeardControl(payload []byte)
}

// maxControlIDs bounds the payload hashes remembered to deliver and relay each once.
const maxControlIDs = 4096

type controlBroadcast struct{ msg []byte }

func (b *controlBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *controlBroadcast) Message() []byte                       { return b.msg }
func (b *controlBroadcast) Finished()                             {}

// firstControl records the hash of payload and reports whether it was new.
func (m *Mesh) firstControl(payload []byte) bool {
	return m.controls.add(sha256.Sum256(payload), maxControlIDs)
}

// seenSet remembers the last keys added, up to a bound, so that gossip delivers and relays
// each message once. Safe for concurrent use; the zero value is ready.
type seenSet[K comparable] struct {
	mu    sync.Mutex
	seen  map[K]bool
	order []K
}

// add records k and reports whether it was new, forgetting the oldest key beyond limit.
func (s *seenSet[K]) add(k K, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[K]bool{}
	}
	if s.seen[k] {
		return false
	}
	if len(s.order) >= limit {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	s.seen[k] = true
	s.order = append(s.order, k)
	return true
}

// BroadcastControl gossips a control record to the mesh. Control records are acted on the
// moment they arrive (kill switches bypass rollout waves), so gossip carries the record
// itself rather than an announcement of it; it must fit MaxMessageSize with its type byte.
func (m *Mesh) BroadcastControl(payload []byte) error {
	if m.closed.Load() {
		return ErrShutdown
	}
	if len(payload) == 0 {
		return errors.New("mesh: empty control record")
	}
	if 1+len(payload) > MaxMessageSize {
		return fmt.Errorf("mesh: control record is %d bytes, limit %d", 1+len(payload), MaxMessageSize-1)
	}
	m.firstControl(payload)
	m.queue.QueueBroadcast(&controlBroadcast{msg: append([]byte{byte(MsgControl)}, payload...)})
	return nil
}

// notifyControl handles a gossiped control record: delivered and relayed once.
func (m *Mesh) notifyControl(buf []byte) {
	if len(buf) < 2 || len(buf) > MaxMessageSize {
		m.stats.malformed.Add(1)
		return
	}
	payload := buf[1:]
	if !m.firstControl(payload) {
		return
	}
	if cd, ok := m.cfg.Delegate.(ControlDelegate); ok {
		cd.HeardControl(payload)
	}
	m.queue.QueueBroadcast(&controlBroadcast{msg: append([]byte(nil), buf...)})
}
