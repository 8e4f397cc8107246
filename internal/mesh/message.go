package mesh

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// MsgType is the first byte of every message this package puts on the wire,
// in gossip and in push/pull state.
//
// Append only: values are never reused or renumbered, because nodes running
// different versions share one mesh. A node drops messages whose type it does
// not know.
type MsgType uint8

// Message types. Append only.
const (
	// MsgInvalid is never sent; it guards against zeroed buffers.
	MsgInvalid MsgType = 0
	// MsgAnnounce is a gossiped [Announcement], JSON encoded.
	MsgAnnounce MsgType = 1
	// MsgDigest is a node's push/pull state: its [Delegate.Digest] as a JSON
	// encoded [Announcement].
	MsgDigest MsgType = 2
)

// String returns a short name for logs.
func (t MsgType) String() string {
	switch t {
	case MsgAnnounce:
		return "announce"
	case MsgDigest:
		return "digest"
	case MsgPurge:
		return "purge"
	case MsgControl:
		return "control"
	default:
		return fmt.Sprintf("msgtype(%d)", uint8(t))
	}
}

// Limits on what an announcement may hold. They keep an encoded announcement
// well under 1 KB so that it fits a gossip packet next to membership traffic.
const (
	// MaxNameLen is the longest node name (and Announcement.From), in bytes.
	MaxNameLen = 128
	// MaxURLLen is the longest Announcement.URL and Meta.FetchURL, in bytes.
	MaxURLLen = 512
	// MaxMessageSize is the largest encoded message accepted, in bytes,
	// type byte included. Longer messages are dropped unread.
	MaxMessageSize = 1024
)

// Announcement tells the mesh that a node runs a bundle: serial Serial with
// content hash Hash, fetchable from URL. It is a plain value; copies are
// independent.
type Announcement struct {
	From   string `json:"from"`
	Serial uint64 `json:"serial"`
	Hash   string `json:"hash"` // hex SHA-256 of the bundle
	URL    string `json:"url"`  // where to fetch it (the announcer's FetchURL)
	// LastPurge is the time (unix ms, on the purging nodes' clocks) of the newest purge the
	// node has applied; in a digest it lets a node that was away notice purges it missed.
	LastPurge int64 `json:"last_purge,omitempty"`
	// Controls is a short digest of the control records (halts, kill switches, unhealthy
	// reports) the node holds; a node whose own digest differs fetches the peer's records,
	// so that one that missed a gossiped record still learns of it.
	Controls string `json:"controls,omitempty"`
}

// Validate reports whether a is well formed: From is a valid node name, Hash
// is a hex encoded SHA-256 (64 hex digits), and URL is at most [MaxURLLen]
// bytes. It checks form only, never whether the bundle exists or is trusted.
func (a Announcement) Validate() error {
	if err := validateName(a.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if len(a.Hash) != 64 {
		return fmt.Errorf("hash: want 64 hex digits, got %d bytes", len(a.Hash))
	}
	if _, err := hex.DecodeString(a.Hash); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	if len(a.URL) > MaxURLLen {
		return fmt.Errorf("url: %d bytes, limit %d", len(a.URL), MaxURLLen)
	}
	if len(a.Controls) > 64 {
		return fmt.Errorf("controls: %d bytes, limit 64", len(a.Controls))
	}
	return nil
}

// errEmpty is returned by decodeMessage for a zero-length message.
var errEmpty = errors.New("empty message")

// encodeMessage returns t followed by the JSON encoding of a. It fails if a is
// invalid or the result exceeds MaxMessageSize.
func encodeMessage(t MsgType, a Announcement) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 1+len(body))
	buf = append(buf, byte(t))
	buf = append(buf, body...)
	if len(buf) > MaxMessageSize {
		return nil, fmt.Errorf("encoded %s is %d bytes, limit %d", t, len(buf), MaxMessageSize)
	}
	return buf, nil
}

// decodeMessage parses a message made by encodeMessage. It never panics on
// any input; unknown types, oversize, malformed JSON, trailing
// data and invalid announcements are errors. It does not retain buf.
func decodeMessage(buf []byte) (MsgType, Announcement, error) {
	var a Announcement
	if len(buf) == 0 {
		return MsgInvalid, a, errEmpty
	}
	if len(buf) > MaxMessageSize {
		return MsgInvalid, a, fmt.Errorf("message is %d bytes, limit %d", len(buf), MaxMessageSize)
	}
	t := MsgType(buf[0])
	switch t {
	case MsgAnnounce, MsgDigest:
	default:
		return t, a, fmt.Errorf("unknown message type %d", uint8(t))
	}
	// Unknown JSON fields are ignored, not refused: a newer node may add
	// fields to a message kind and older nodes must still read the rest.
	dec := json.NewDecoder(bytes.NewReader(buf[1:]))
	if err := dec.Decode(&a); err != nil {
		return t, Announcement{}, fmt.Errorf("%s: %w", t, err)
	}
	if dec.More() {
		return t, Announcement{}, fmt.Errorf("%s: trailing data", t)
	}
	if err := a.Validate(); err != nil {
		return t, Announcement{}, fmt.Errorf("%s: %w", t, err)
	}
	return t, a, nil
}
