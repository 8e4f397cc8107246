package control

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"rhizome/internal/bundle"
	"rhizome/internal/rollout"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	counters := &rollout.Counters{Requests: 1e6, NodeErrors: 1200, Panics: 3, StageFailures: 4}
	tests := []struct {
		name string
		rec  Record
	}{
		{"halt", halt(hashA, 1)},
		{"resume", resume(hashA, 2)},
		{"rollback", rollback(hashA, 3)},
		{"unhealthy", Record{Kind: KindUnhealthy, Bundle: hashA, Serial: 9, Node: "edge-fra-01", Reason: "panics", Counters: counters, At: at(4)}},
		{"unhealthy, unknown node", unhealthy(hashA, "edge-new-99", 4)},
		{"killswitch on, all sites", kill("waf", "", true, 5)},
		{"killswitch off, one site", kill("paycrawl", "shop.example.com", false, 6)},
		{"no reason", Record{Kind: KindHalt, Bundle: hashB, At: at(7)}},
		{"dated now + max skew", Record{Kind: KindHalt, Bundle: hashB, At: testNow.Add(MaxClockSkew).UnixMilli()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := f.keyFor(tt.rec)
			s, err := Sign(tt.rec, key)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(s.Encode()); n > MaxEncoded {
				t.Errorf("encoded %d bytes, limit %d", n, MaxEncoded)
			}
			want := tt.rec
			pub := key.Public().(ed25519.PublicKey)
			want.KeyID = bundle.KeyID(pub)
			if want.Kind == KindUnhealthy {
				want.Pub = bundle.FormatPublicKey(pub)
			}
			got, err := v.Verify(s)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Verify = %+v, want %+v", *got, want)
			}

			// Through the wire form and back.
			d, err := Decode(s.Encode())
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(d.Body, s.Body) || !bytes.Equal(d.Sig, s.Sig) || d.ID() != s.ID() {
				t.Fatalf("Decode(Encode()) = %+v, want %+v", d, s)
			}
			if got, err := v.Verify(d); err != nil || !reflect.DeepEqual(*got, want) {
				t.Errorf("Verify(decoded) = %+v, %v", got, err)
			}
			if len(s.ID()) != 64 {
				t.Errorf("ID %q: want 64 hex digits", s.ID())
			}
		})
	}
}

// An operator record signed with a key the node does not trust, or whose signature does
// not match its body, is refused, and so is every kind of malformed body, even one signed
// with the right key.
func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()

	// reencode decodes s's body into a generic map (keys sorted on output) and re-encodes
	// it with enc, signed again with key.
	reencode := func(s Signed, key ed25519.PrivateKey, enc func(any) ([]byte, error)) Signed {
		var m map[string]any
		if err := json.Unmarshal(s.Body, &m); err != nil {
			t.Fatal(err)
		}
		b, err := enc(m)
		if err != nil {
			t.Fatal(err)
		}
		return signBody(key, b)
	}
	good := f.sign(t, halt(hashA, 1))
	goodNode := f.sign(t, unhealthy(hashA, "edge-fra-01", 1))
	longName := strings.Repeat("n", 129)

	tests := []struct {
		name string
		s    Signed
		v    Verifier
		want string
	}{
		// Signatures.
		{"operator kind signed by an untrusted key", func() Signed {
			s, err := Sign(halt(hashA, 1), f.other)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), v, "not a trusted operator key"},
		{"killswitch signed by a node key", func() Signed {
			s, err := Sign(kill("waf", "", true, 1), f.node)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), v, "not a trusted operator key"},
		{"trusted key id, another key's signature", handMade(t, Record{Kind: KindHalt, Bundle: hashA, At: at(1), KeyID: bundle.KeyID(f.opPub)}, f.other), v, "bad signature"},
		{"tampered body, canonical", Signed{Body: bytes.Replace(good.Body, []byte(hashA), []byte(hashB), 1), Sig: good.Sig}, v, "bad signature"},
		{"tampered signature", Signed{Body: good.Body, Sig: append(append([]byte{}, good.Sig[:10]...), append([]byte{good.Sig[10] ^ 1}, good.Sig[11:]...)...)}, v, "bad signature"},
		{"no signature", Signed{Body: good.Body}, v, "bad signature"},
		{"no domain prefix (bundle-like signature)", Signed{Body: good.Body, Sig: ed25519.Sign(f.op, good.Body)}, v, "bad signature"},
		{"bundle domain prefix", Signed{Body: good.Body, Sig: ed25519.Sign(f.op, append([]byte("rhizome-bundle-v1\n"), good.Body...))}, v, "bad signature"},
		{"report domain prefix", Signed{Body: good.Body, Sig: ed25519.Sign(f.op, append([]byte("rhizome-report-v1\n"), good.Body...))}, v, "bad signature"},
		{"unhealthy signed by another key than its pub", Signed{Body: goodNode.Body, Sig: signBody(f.node2, goodNode.Body).Sig}, v, "bad signature"},

		// Canonical form.
		{"indented", reencode(good, f.op, func(v any) ([]byte, error) { return json.MarshalIndent(v, "", " ") }), v, "canonical"},
		{"reordered keys", reencode(good, f.op, json.Marshal), v, "canonical"},
		{"leading space", signBody(f.op, append([]byte(" "), good.Body...)), v, "canonical"},
		{"trailing newline", signBody(f.op, append(append([]byte{}, good.Body...), '\n')), v, "canonical"},
		{"trailing data", signBody(f.op, append(append([]byte{}, good.Body...), good.Body...)), v, "canonical"},
		{"escaped letter", signBody(f.op, bytes.Replace(good.Body, []byte(`"halt"`), []byte(`"\u0068alt"`), 1)), v, "canonical"},
		{"upper-case field name", signBody(f.op, bytes.Replace(good.Body, []byte(`"kind"`), []byte(`"KIND"`), 1)), v, "canonical"},
		{"duplicate field", signBody(f.op, bytes.Replace(good.Body, []byte(`{`), []byte(`{"kind":"resume",`), 1)), v, "canonical"},
		{"zero value spelled out", signBody(f.op, bytes.Replace(good.Body, []byte(`{`), []byte(`{"on":false,`), 1)), v, "canonical"},
		{"unhealthy reordered keys", reencode(goodNode, f.node, json.Marshal), v, "canonical"},

		// Malformed bodies.
		{"unknown field", signBody(f.op, bytes.Replace(good.Body, []byte(`{`), []byte(`{"extra":1,`), 1)), v, "unknown field"},
		{"unknown field, node report", signBody(f.node, bytes.Replace(goodNode.Body, []byte(`{`), []byte(`{"sites":["x"],`), 1)), v, "unknown field"},
		{"empty body", signBody(f.op, nil), v, "body"},
		{"not JSON", signBody(f.op, []byte("halt everything")), v, "body"},
		{"JSON array", signBody(f.op, []byte(`[1,2]`)), v, "body"},
		{"wrong type", signBody(f.op, bytes.Replace(good.Body, []byte(`"serial":7`), []byte(`"serial":"7"`), 1)), v, "body"},

		// Node reports.
		{"unhealthy, pub not matching key_id", handMade(t, Record{Kind: KindUnhealthy, Bundle: hashA, Node: "edge-fra-01", At: at(1), Pub: bundle.FormatPublicKey(f.node2Pub)}, f.node), v, "key_id does not match pub"},
		{"unhealthy, pub not a key", handMade(t, Record{Kind: KindUnhealthy, Bundle: hashA, Node: "edge-fra-01", At: at(1), Pub: "ed25519:bm90IGEga2V5"}, f.node), v, "pub"},
		{"unhealthy, no pub", signBody(f.node, bytes.Replace(goodNode.Body, []byte(`,"pub":"`+bundle.FormatPublicKey(f.nodePub)+`"`), nil, 1)), v, "pub"},
		{"unhealthy, node publishes another key", goodNode, Verifier{Trust: f.trust, NodeKey: func(string) (ed25519.PublicKey, bool) { return f.node2Pub, true }, Now: v.Now}, "publishes another key"},
		{"unhealthy, impersonating a known node", f.sign(t, unhealthy(hashA, "edge-ams-02", 1)) /* signed by node2 */, Verifier{Trust: f.trust, NodeKey: func(string) (ed25519.PublicKey, bool) { return f.nodePub, true }, Now: v.Now}, "publishes another key"},
		{"unhealthy, bad node name", handMade(t, Record{Kind: KindUnhealthy, Bundle: hashA, Node: "edge fra", At: at(1)}, f.node), v, "node:"},
		{"unhealthy, no node name", handMade(t, Record{Kind: KindUnhealthy, Bundle: hashA, At: at(1)}, f.node), v, "node:"},
		{"unhealthy, node name too long", handMade(t, Record{Kind: KindUnhealthy, Bundle: hashA, Node: longName, At: at(1)}, f.node), v, "node:"},

		// Clock.
		{"more than MaxClockSkew in the future", f.sign(t, Record{Kind: KindResume, Bundle: hashA, At: testNow.Add(MaxClockSkew + time.Millisecond).UnixMilli()}), v, "in the future"},
		{"far future killswitch", f.sign(t, Record{Kind: KindKillSwitch, Stage: "waf", On: false, At: testNow.Add(24 * time.Hour).UnixMilli()}), v, "in the future"},
		{"no time", handMade(t, Record{Kind: KindHalt, Bundle: hashA}, f.op), v, "at:"},
		{"negative time", handMade(t, Record{Kind: KindHalt, Bundle: hashA, At: -1}, f.op), v, "at:"},

		// Fields.
		{"no kind", handMade(t, Record{Bundle: hashA, At: at(1)}, f.op), v, "kind:"},
		{"unknown kind", handMade(t, Record{Kind: "delete", Bundle: hashA, At: at(1)}, f.op), v, "kind:"},
		{"upper-case kind", handMade(t, Record{Kind: "HALT", Bundle: hashA, At: at(1)}, f.op), v, "kind:"},
		{"unknown stage", handMade(t, Record{Kind: KindKillSwitch, Stage: "cache", On: true, At: at(1)}, f.op), v, "stage:"},
		{"upper-case stage", handMade(t, Record{Kind: KindKillSwitch, Stage: "WAF", On: true, At: at(1)}, f.op), v, "stage:"},
		{"no stage", handMade(t, Record{Kind: KindKillSwitch, On: true, At: at(1)}, f.op), v, "stage:"},
		{"bad site", handMade(t, Record{Kind: KindKillSwitch, Stage: "waf", Site: "-shop", On: true, At: at(1)}, f.op), v, "site:"},
		{"site too long", handMade(t, Record{Kind: KindKillSwitch, Stage: "waf", Site: longName, On: true, At: at(1)}, f.op), v, "site:"},
		{"no bundle", handMade(t, Record{Kind: KindHalt, At: at(1)}, f.op), v, "bundle:"},
		{"short bundle hash", handMade(t, Record{Kind: KindRollback, Bundle: hashA[:63], At: at(1)}, f.op), v, "bundle:"},
		{"long bundle hash", handMade(t, Record{Kind: KindResume, Bundle: hashA + "0", At: at(1)}, f.op), v, "bundle:"},
		{"upper-case bundle hash", handMade(t, Record{Kind: KindHalt, Bundle: strings.ToUpper(hashA), At: at(1)}, f.op), v, "bundle:"},
		{"non-hex bundle hash", handMade(t, Record{Kind: KindHalt, Bundle: "g" + hashA[1:], At: at(1)}, f.op), v, "bundle:"},
		{"unhealthy, bad bundle hash", handMade(t, Record{Kind: KindUnhealthy, Bundle: "serial-7", Node: "edge-fra-01", At: at(1)}, f.node), v, "bundle:"},
		{"reason over the limit", handMade(t, Record{Kind: KindHalt, Bundle: hashA, Reason: strings.Repeat("r", MaxReasonLen+1), At: at(1)}, f.op), v, "reason:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.v.Verify(tt.s)
			if r != nil {
				t.Errorf("Verify returned a record along with an error: %+v", r)
			}
			wantErr(t, err, tt.want)
		})
	}
}

// Every single-byte change to a signed body, and every bit flip in its signature, is
// refused.
func TestVerifyRefusesEveryByteChange(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	for _, s := range []Signed{f.sign(t, halt(hashA, 1)), f.sign(t, unhealthy(hashA, "edge-fra-01", 1)), f.sign(t, kill("bots", "shop", true, 1))} {
		for i := range s.Body {
			for _, delta := range []byte{1, 0x20, 0x80} {
				body := bytes.Clone(s.Body)
				body[i] ^= delta
				if r, err := v.Verify(Signed{Body: body, Sig: s.Sig}); err == nil {
					t.Fatalf("body byte %d ^ %#x accepted: %q -> %+v", i, delta, body, r)
				}
			}
		}
		for i := range len(s.Sig) * 8 {
			sig := bytes.Clone(s.Sig)
			sig[i/8] ^= 1 << (i % 8)
			if _, err := v.Verify(Signed{Body: s.Body, Sig: sig}); err == nil {
				t.Fatalf("signature bit %d flipped accepted", i)
			}
		}
	}
}

func TestVerifyNodeKey(t *testing.T) {
	f := newFixture(t)
	s := f.sign(t, unhealthy(hashA, "edge-fra-01", 1))
	now := func() time.Time { return testNow }
	tests := []struct {
		name    string
		nodeKey func(string) (ed25519.PublicKey, bool)
		want    string // "" for accepted
	}{
		{"published key matches", func(string) (ed25519.PublicKey, bool) { return f.nodePub, true }, ""},
		{"node unknown (it may have died)", func(string) (ed25519.PublicKey, bool) { return nil, false }, ""},
		{"no NodeKey", nil, ""},
		{"node publishes another key", func(string) (ed25519.PublicKey, bool) { return f.node2Pub, true }, "publishes another key"},
		{"node publishes no usable key", func(string) (ed25519.PublicKey, bool) { return ed25519.PublicKey{}, true }, "publishes another key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			nk := tt.nodeKey
			if nk != nil {
				nk = func(name string) (ed25519.PublicKey, bool) {
					asked = append(asked, name)
					return tt.nodeKey(name)
				}
			}
			r, err := Verifier{NodeKey: nk, Now: now}.Verify(s)
			if tt.want != "" {
				wantErr(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Node != "edge-fra-01" || r.Pub != bundle.FormatPublicKey(f.nodePub) {
				t.Errorf("record %+v", r)
			}
			if tt.nodeKey != nil && !reflect.DeepEqual(asked, []string{"edge-fra-01"}) {
				t.Errorf("NodeKey asked about %q, want the reporting node", asked)
			}
		})
	}
}

// Verify's clock defaults to time.Now: a record dated now is accepted, one dated an hour
// ahead is not.
func TestVerifyDefaultClock(t *testing.T) {
	f := newFixture(t)
	v := Verifier{Trust: f.trust}
	if _, err := v.Verify(f.sign(t, Record{Kind: KindHalt, Bundle: hashA, At: time.Now().UnixMilli()})); err != nil {
		t.Errorf("record dated now: %v", err)
	}
	_, err := v.Verify(f.sign(t, Record{Kind: KindHalt, Bundle: hashA, At: time.Now().Add(time.Hour).UnixMilli()}))
	wantErr(t, err, "in the future")
}

func TestSignRefuses(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		rec  Record
		key  ed25519.PrivateKey
		want string
	}{
		{"not a key", halt(hashA, 1), ed25519.PrivateKey("short"), "not an Ed25519 private key"},
		{"no key", halt(hashA, 1), nil, "not an Ed25519 private key"},
		{"public key as private", halt(hashA, 1), ed25519.PrivateKey(f.opPub), "not an Ed25519 private key"},
		{"no kind", Record{Bundle: hashA, At: at(1)}, f.op, "kind:"},
		{"bad kind", Record{Kind: "purge", Bundle: hashA, At: at(1)}, f.op, "kind:"},
		{"bad stage", Record{Kind: KindKillSwitch, Stage: "cache", At: at(1)}, f.op, "stage:"},
		{"bad site", Record{Kind: KindKillSwitch, Stage: "waf", Site: "a b", At: at(1)}, f.op, "site:"},
		{"bad bundle", Record{Kind: KindHalt, Bundle: "latest", At: at(1)}, f.op, "bundle:"},
		{"bad node", Record{Kind: KindUnhealthy, Bundle: hashA, Node: "", At: at(1)}, f.node, "node:"},
		{"no time", Record{Kind: KindHalt, Bundle: hashA}, f.op, "at:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(tt.rec, tt.key)
			wantErr(t, err, tt.want)
		})
	}
}

// Sign truncates a long reason to MaxReasonLen; a body over the limit made by hand is
// refused; one exactly at the limit is accepted.
func TestReasonLimit(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	long := strings.Repeat("x", 3*MaxReasonLen)
	for _, rec := range []Record{
		{Kind: KindHalt, Bundle: hashA, Reason: long, At: at(1)},
		{Kind: KindUnhealthy, Bundle: hashA, Node: "edge-fra-01", Reason: long, At: at(1)},
		{Kind: KindKillSwitch, Stage: "waf", On: true, Reason: long, At: at(1)},
	} {
		r, err := v.Verify(f.sign(t, rec))
		if err != nil {
			t.Fatalf("%s: %v", rec.Kind, err)
		}
		if r.Reason != long[:MaxReasonLen] {
			t.Errorf("%s: reason %d bytes, want the first %d", rec.Kind, len(r.Reason), MaxReasonLen)
		}
	}
	if _, err := v.Verify(handMade(t, Record{Kind: KindHalt, Bundle: hashA, Reason: long[:MaxReasonLen], At: at(1)}, f.op)); err != nil {
		t.Errorf("reason at the limit: %v", err)
	}
	_, err := v.Verify(handMade(t, Record{Kind: KindHalt, Bundle: hashA, Reason: long, At: at(1)}, f.op))
	wantErr(t, err, "reason:")
}

// Whatever text an operator or a node puts in a reason, Sign makes a record that Verify
// accepts: a long reason is not cut inside a UTF-8 sequence, and invalid UTF-8 (which JSON
// would turn into an escape that does not survive a round trip) does not make the body
// non-canonical.
func TestReasonText(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	reasons := []string{
		strings.Repeat("ü", MaxReasonLen),        // 2-byte runes, even cut
		"x" + strings.Repeat("ü", MaxReasonLen),  // 2-byte runes, cut inside one
		strings.Repeat("€", MaxReasonLen),        // 3-byte runes
		"x" + strings.Repeat("€", MaxReasonLen),  // cut inside a 3-byte rune
		"xx" + strings.Repeat("🔥", MaxReasonLen), // 4-byte runes
		"bad \xff byte",      // invalid UTF-8
		"truncated \xe2\x82", // a rune cut short
		"<script>&amp;</script> \u2028 \x00 \t \"q\"", // escaped by JSON
	}
	for _, reason := range reasons {
		for _, kind := range []string{KindHalt, KindUnhealthy} {
			rec := Record{Kind: kind, Bundle: hashA, Node: "edge-fra-01", Reason: reason, At: at(1)}
			s, err := Sign(rec, f.keyFor(rec))
			if err != nil {
				// Sign may refuse a reason whose JSON escapes do not fit MaxEncoded, but
				// nothing here is that long.
				t.Fatalf("Sign(%s, %q): %v", kind, reason, err)
			}
			r, err := v.Verify(s)
			if err != nil {
				t.Fatalf("Verify(%s, reason %q): %v (body %s)", kind, reason, err, s.Body)
			}
			if !utf8.ValidString(r.Reason) || len(r.Reason) > MaxReasonLen {
				t.Errorf("reason %q: got %q (%d bytes)", reason, r.Reason, len(r.Reason))
			}
			if utf8.ValidString(reason) && !strings.HasPrefix(reason, r.Reason) {
				t.Errorf("reason %q: got %q, not a prefix", reason, r.Reason)
			}
			if utf8.ValidString(reason) && len(reason) <= MaxReasonLen && r.Reason != reason {
				t.Errorf("reason %q changed to %q", reason, r.Reason)
			}
			if len(reason) > MaxReasonLen && len(r.Reason) < MaxReasonLen-utf8.UTFMax {
				t.Errorf("reason cut to %d bytes, more than needed", len(r.Reason))
			}
		}
	}
}

func TestDecode(t *testing.T) {
	f := newFixture(t)
	s := f.sign(t, halt(hashA, 1))
	enc := s.Encode()
	pad := func(b []byte, n int) []byte { return append(bytes.Clone(b), bytes.Repeat([]byte(" "), n-len(b))...) }

	good := []struct {
		name string
		in   []byte
	}{
		{"as encoded", enc},
		{"trailing newline", append(bytes.Clone(enc), '\n')},
		{"padded to MaxEncoded", pad(enc, MaxEncoded)},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.Body, s.Body) || !bytes.Equal(d.Sig, s.Sig) {
				t.Errorf("Decode = %+v, want %+v", d, s)
			}
		})
	}

	bad := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "control"},
		{"garbage", []byte("\x00\x01garbage"), "control"},
		{"truncated", enc[:len(enc)/2], "control"},
		{"not an object", []byte(`["body","sig"]`), "control"},
		{"body not base64", []byte(`{"body":"!!!","sig":""}`), "control"},
		{"body a number", []byte(`{"body":1,"sig":""}`), "control"},
		{"unknown field", append([]byte(`{"kind":"halt",`), enc[1:]...), "unknown field"},
		{"oversize", pad(enc, MaxEncoded+1), "exceed"},
		{"huge", bytes.Repeat([]byte("{"), 1<<20), "exceed"},
		{"trailing garbage", append(bytes.Clone(enc), "x"...), "after the record"},
		{"trailing record", append(bytes.Clone(enc), enc...), "after the record"},
		{"trailing object", append(bytes.Clone(enc), "{}"...), "after the record"},
		{"trailing brace", append(bytes.Clone(enc), '}'), "after the record"},
		{"trailing bracket", append(bytes.Clone(enc), ']'), "after the record"},
		{"trailing number", append(bytes.Clone(enc), " 1"...), "after the record"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.in)
			wantErr(t, err, tt.want)
		})
	}
}

func TestRecordTime(t *testing.T) {
	r := Record{At: testNow.UnixMilli()}
	if !r.Time().Equal(testNow) {
		t.Errorf("Time() = %v, want %v", r.Time(), testNow)
	}
}
