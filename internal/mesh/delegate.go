package mesh

import (
	"log/slog"

	"github.com/hashicorp/memberlist"
)

// announceBroadcast is one queued announcement. A newer announcement from the
// same node invalidates queued older ones, so a burst of serials sends only
// the latest.
type announceBroadcast struct {
	a   Announcement
	msg []byte
}

var _ memberlist.Broadcast = (*announceBroadcast)(nil)

// Invalidates implements memberlist.Broadcast: b replaces a queued
// announcement from the same node with a serial no newer than b's.
func (b *announceBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*announceBroadcast)
	return ok && o.a.From == b.a.From && o.a.Serial <= b.a.Serial
}

// Message implements memberlist.Broadcast.
func (b *announceBroadcast) Message() []byte { return b.msg }

// Finished implements memberlist.Broadcast.
func (b *announceBroadcast) Finished() {}

// mlDelegate adapts a Mesh to memberlist.Delegate. memberlist calls it from
// its packet and stream goroutines, concurrently; nothing here blocks or
// calls back into memberlist.
type mlDelegate struct{ m *Mesh }

var _ memberlist.Delegate = mlDelegate{}

// NodeMeta implements memberlist.Delegate: the encoded Meta, checked against
// the limit at Start.
func (d mlDelegate) NodeMeta(limit int) []byte {
	cur := d.m.meta.Load()
	meta := cur.meta
	if d.m.left.Load() {
		meta = cur.leaving
	}
	if len(meta) > limit {
		return nil
	}
	return meta
}

// NotifyMsg implements memberlist.Delegate: gossiped announcements go to
// Delegate.Heard, and new ones are relayed. buf is not retained.
func (d mlDelegate) NotifyMsg(buf []byte) {
	m := d.m
	if len(buf) > 0 && MsgType(buf[0]) == MsgPurge {
		m.notifyPurge(buf)
		return
	}
	if len(buf) > 0 && MsgType(buf[0]) == MsgControl {
		m.notifyControl(buf)
		return
	}
	t, a, err := decodeMessage(buf)
	if err != nil {
		m.stats.malformed.Add(1)
		m.log.Debug("mesh: dropped malformed message", "type", t, "len", len(buf), "err", err)
		return
	}
	if t != MsgAnnounce {
		m.stats.malformed.Add(1)
		m.log.Debug("mesh: dropped message of unexpected type in gossip", "type", t)
		return
	}
	m.stats.heard.Add(1)
	m.cfg.Delegate.Heard(a)
	if a.From != m.cfg.Name && m.noteSeen(a) {
		m.stats.relayed.Add(1)
		m.queue.QueueBroadcast(&announceBroadcast{a: a, msg: append([]byte(nil), buf...)})
	}
}

// GetBroadcasts implements memberlist.Delegate from the transmit-limited queue.
func (d mlDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.queue.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: this node's digest, for
// push/pull and join. A node that runs nothing (empty Hash) sends nothing.
func (d mlDelegate) LocalState(join bool) []byte {
	m := d.m
	a := m.cfg.Delegate.Digest()
	if a.Hash == "" {
		return nil
	}
	buf, err := encodeMessage(MsgDigest, a)
	if err != nil {
		m.log.Warn("mesh: not sending invalid digest", "err", err)
		return nil
	}
	return buf
}

// MergeRemoteState implements memberlist.Delegate: a peer's digest goes to
// Delegate.Heard. buf is not retained.
func (d mlDelegate) MergeRemoteState(buf []byte, join bool) {
	m := d.m
	if len(buf) == 0 {
		return
	}
	t, a, err := decodeMessage(buf)
	if err == nil && t != MsgDigest {
		err = errUnexpected(t)
	}
	if err != nil {
		m.stats.malformed.Add(1)
		m.log.Debug("mesh: dropped malformed remote state", "type", t, "len", len(buf), "join", join, "err", err)
		return
	}
	m.stats.digests.Add(1)
	m.cfg.Delegate.Heard(a)
}

// errUnexpected reports a known message type in the wrong place.
type errUnexpected MsgType

func (e errUnexpected) Error() string { return "unexpected message type " + MsgType(e).String() }

// mlEvents adapts a Mesh to memberlist.EventDelegate. memberlist calls it
// with its node lock held: it only updates the member table and logs.
type mlEvents struct{ m *Mesh }

var _ memberlist.EventDelegate = mlEvents{}

// NotifyJoin implements memberlist.EventDelegate.
func (e mlEvents) NotifyJoin(n *memberlist.Node) {
	mem := e.m.setMember(n, StateAlive)
	if n.Name != e.m.cfg.Name {
		e.m.log.Info("mesh: node joined", memberAttrs(mem)...)
	}
	e.changed()
}

func (e mlEvents) changed() {
	if f := e.m.cfg.OnChange; f != nil {
		f()
	}
}

// NotifyLeave implements memberlist.EventDelegate: the node left gracefully or
// was declared dead. memberlist does not say which (it never fills
// Node.State), so a node that announced it was leaving is "left", any other
// "dead".
func (e mlEvents) NotifyLeave(n *memberlist.Node) {
	mem := e.m.setMember(n, StateDead)
	msg := "mesh: node failed"
	if mem.State == StateLeft {
		msg = "mesh: node left"
	}
	e.m.log.Info(msg, memberAttrs(mem)...)
	e.changed()
}

// NotifyUpdate implements memberlist.EventDelegate (metadata changed).
func (e mlEvents) NotifyUpdate(n *memberlist.Node) {
	mem := e.m.setMember(n, StateAlive)
	e.m.log.Debug("mesh: node updated", memberAttrs(mem)...)
	e.changed()
}

// memberAttrs returns slog attributes describing mem.
func memberAttrs(mem Member) []any {
	return []any{
		slog.String("node", mem.Name),
		slog.String("addr", mem.Addr),
		slog.String("region", mem.Meta.Region),
		slog.String("provider", mem.Meta.Provider),
	}
}
