package mesh

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	a := Announcement{From: "n1", Serial: 42, Hash: hashOf("b"), URL: "https://n1.example/bundles/"}
	for _, typ := range []MsgType{MsgAnnounce, MsgDigest} {
		buf, err := encodeMessage(typ, a)
		if err != nil {
			t.Fatal(err)
		}
		if MsgType(buf[0]) != typ {
			t.Errorf("prefix = %d, want %d", buf[0], typ)
		}
		gotT, got, err := decodeMessage(buf)
		if err != nil || gotT != typ || got != a {
			t.Errorf("decode = %v %+v %v, want %v %+v", gotT, got, err, typ, a)
		}
	}
	// The largest valid announcement is still well under 1 KB.
	big := Announcement{From: strings.Repeat("f", MaxNameLen), Serial: ^uint64(0), Hash: hashOf("x"), URL: strings.Repeat("u", MaxURLLen)}
	buf, err := encodeMessage(MsgAnnounce, big)
	if err != nil {
		t.Fatal(err)
	}
	if len(buf) > 1000 {
		t.Errorf("largest announcement is %d bytes", len(buf))
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := `{"from":"n1","serial":1,"hash":"` + hashOf("b") + `","url":"u"}`
	tests := []struct {
		name string
		buf  []byte
	}{
		{"empty", nil},
		{"type only", []byte{byte(MsgAnnounce)}},
		{"zero type", append([]byte{0}, valid...)},
		{"unknown type", append([]byte{200}, valid...)},
		{"not json", append([]byte{byte(MsgAnnounce)}, "hello"...)},
		{"json array", append([]byte{byte(MsgAnnounce)}, "[1,2]"...)},
		{"trailing data", append([]byte{byte(MsgAnnounce)}, valid+`{}`...)},
		{"missing from", append([]byte{byte(MsgAnnounce)}, `{"serial":1,"hash":"`+hashOf("b")+`"}`...)},
		{"short hash", append([]byte{byte(MsgAnnounce)}, `{"from":"n1","serial":1,"hash":"abcd"}`...)},
		{"non-hex hash", append([]byte{byte(MsgAnnounce)}, `{"from":"n1","serial":1,"hash":"`+strings.Repeat("z", 64)+`"}`...)},
		{"negative serial", append([]byte{byte(MsgAnnounce)}, `{"from":"n1","serial":-1,"hash":"`+hashOf("b")+`"}`...)},
		{"oversize", append([]byte{byte(MsgAnnounce)}, bytes.Repeat([]byte(" "), MaxMessageSize)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeMessage(tt.buf); err == nil {
				t.Fatal("decoded, want error")
			}
		})
	}
}

func TestDecodeRandomGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		buf := make([]byte, r.IntN(64))
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if len(buf) > 0 && r.IntN(2) == 0 {
			buf[0] = byte(MsgAnnounce)
		}
		_, _, _ = decodeMessage(buf) // must not panic
	}
}

// TestDelegateDropsMalformed feeds garbage through the memberlist-facing
// adapter: nothing reaches Heard, nothing panics, the drops are counted.
func TestDelegateDropsMalformed(t *testing.T) {
	n := startNode(t, "solo", nil)
	d := mlDelegate{n.Mesh}
	d.NotifyMsg([]byte{byte(MsgAnnounce), '{'})
	d.NotifyMsg(nil)
	d.MergeRemoteState([]byte("garbage"), false)
	digest, _ := encodeMessage(MsgDigest, Announcement{From: "x", Serial: 1, Hash: hashOf("x")})
	d.NotifyMsg(digest) // a digest is not a gossip message
	ann, _ := encodeMessage(MsgAnnounce, Announcement{From: "x", Serial: 1, Hash: hashOf("x")})
	d.MergeRemoteState(ann, true) // nor is an announcement push/pull state
	n.rec.mu.Lock()
	got := len(n.rec.heard)
	n.rec.mu.Unlock()
	if got != 0 {
		t.Errorf("Heard called %d times", got)
	}
	if s := n.Stats(); s.Malformed != 5 {
		t.Errorf("Malformed = %d, want 5", s.Malformed)
	}
	// A valid one is heard and relayed once; a repeat is heard but not relayed.
	d.NotifyMsg(ann)
	d.NotifyMsg(ann)
	if s := n.Stats(); s.Heard != 2 || s.Relayed != 1 {
		t.Errorf("stats = %+v, want Heard 2 Relayed 1", s)
	}
}

func TestBroadcastInvalidates(t *testing.T) {
	b := func(from string, serial uint64) *announceBroadcast {
		return &announceBroadcast{a: Announcement{From: from, Serial: serial}}
	}
	tests := []struct {
		newer, queued *announceBroadcast
		want          bool
	}{
		{b("a", 2), b("a", 1), true},
		{b("a", 2), b("a", 2), true},
		{b("a", 1), b("a", 2), false},
		{b("a", 2), b("b", 1), false},
	}
	for _, tt := range tests {
		if got := tt.newer.Invalidates(tt.queued); got != tt.want {
			t.Errorf("%+v.Invalidates(%+v) = %v, want %v", tt.newer.a, tt.queued.a, got, tt.want)
		}
	}
}

// captureHandler records slog records for TestMemberlistLogLevels.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func TestMemberlistLogLevels(t *testing.T) {
	h := &captureHandler{}
	l := newMemberlistLogger(slog.New(h))
	l.Printf("[DEBUG] memberlist: probing")
	l.Printf("[INFO] memberlist: routine")
	l.Printf("[WARN] memberlist: was able to connect")
	l.Printf("[ERR] memberlist: failed to decrypt")
	l.Printf("no tag at all")
	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug, "probing"},
		{slog.LevelDebug, "routine"},
		{slog.LevelWarn, "was able to connect"},
		{slog.LevelWarn, "failed to decrypt"},
		{slog.LevelDebug, "no tag at all"},
	}
	if len(h.recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(h.recs), len(want))
	}
	for i, w := range want {
		if r := h.recs[i]; r.Level != w.level || r.Message != w.msg {
			t.Errorf("record %d = %v %q, want %v %q", i, r.Level, r.Message, w.level, w.msg)
		}
	}
}

func FuzzDecode(f *testing.F) {
	valid, _ := encodeMessage(MsgAnnounce, Announcement{From: "n1", Serial: 9, Hash: hashOf("b"), URL: "https://n1/b/"})
	digest, _ := encodeMessage(MsgDigest, Announcement{From: "n2", Serial: 1, Hash: hashOf("c")})
	for _, seed := range [][]byte{
		nil, {0}, {1}, {2}, {255}, valid, digest,
		append([]byte{1}, `{"from":"x","serial":1e30}`...),
		append([]byte{1}, `{"from":"\u0000","hash":"`...),
		append([]byte{2}, `null`...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		typ, a, err := decodeMessage(buf)
		if err != nil {
			return
		}
		// Whatever decodes must be valid and survive a round trip.
		if err := a.Validate(); err != nil {
			t.Fatalf("decoded invalid announcement %+v: %v", a, err)
		}
		again, err := encodeMessage(typ, a)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", a, err)
		}
		typ2, a2, err := decodeMessage(again)
		if err != nil || typ2 != typ || a2 != a {
			t.Fatalf("round trip: %v %+v %v, want %v %+v", typ2, a2, err, typ, a)
		}
	})
}
