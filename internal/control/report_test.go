package control

import (
	"crypto/ed25519"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"rhizome/internal/rollout"
)

func TestReportRoundTrip(t *testing.T) {
	f := newFixture(t)
	reports := []Report{
		{Node: "edge-fra-01", Bundle: hashA, Serial: 42, Healthy: true, Figures: [4]uint64{1e12, 3, 0, 1}, At: testNow.UnixMilli()},
		{Node: "edge-ams-02", Bundle: hashB, Serial: 1, Healthy: false, At: 1},
		{Node: "n", Bundle: hashA, Serial: math.MaxUint64, Figures: [4]uint64{math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64}, At: math.MaxInt64},
	}
	for _, r := range reports {
		raw, err := SignReport(r, f.node)
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyReport(raw, r.Node, f.nodePub)
		if err != nil {
			t.Fatalf("VerifyReport(%s): %v", raw, err)
		}
		if *got != r {
			t.Errorf("VerifyReport = %+v, want %+v", *got, r)
		}
		// As it travels inside other JSON (the mesh metadata) and comes back out.
		outer, err := json.Marshal(struct {
			Report json.RawMessage `json:"report"`
		}{raw})
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Report json.RawMessage `json:"report"`
		}
		if err := json.Unmarshal(outer, &back); err != nil {
			t.Fatal(err)
		}
		if got, err := VerifyReport(back.Report, r.Node, f.nodePub); err != nil || *got != r {
			t.Errorf("after embedding: %+v, %v", got, err)
		}
	}
}

func TestReportCounters(t *testing.T) {
	c := rollout.Counters{Requests: 1e12, NodeErrors: 2, Panics: 3, StageFailures: 4}
	var r Report
	r.SetCounters(c)
	if r.Figures != [4]uint64{1e12, 2, 3, 4} {
		t.Errorf("Figures = %v", r.Figures)
	}
	if r.Counters() != c {
		t.Errorf("Counters() = %+v, want %+v", r.Counters(), c)
	}
}

func TestVerifyReportRefuses(t *testing.T) {
	f := newFixture(t)
	r := Report{Node: "edge-fra-01", Bundle: hashA, Serial: 42, Healthy: true, Figures: [4]uint64{100, 0, 0, 0}, At: testNow.UnixMilli()}
	raw, err := SignReport(r, f.node)
	if err != nil {
		t.Fatal(err)
	}
	var sr SignedReport
	if err := json.Unmarshal(raw, &sr); err != nil {
		t.Fatal(err)
	}
	remake := func(body []byte, sig []byte) json.RawMessage {
		b, err := json.Marshal(SignedReport{Body: body, Sig: sig})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	signed := func(r Report, key ed25519.PrivateKey) json.RawMessage {
		raw, err := SignReport(r, key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	withDomain := func(domain string, body []byte) []byte {
		return ed25519.Sign(f.node, append([]byte(domain), body...))
	}
	unhealthy := r
	unhealthy.Healthy = false
	badHash := r
	badHash.Bundle = "serial-42"
	upper := r
	upper.Bundle = strings.ToUpper(hashA)
	tests := []struct {
		name string
		raw  json.RawMessage
		node string
		pub  ed25519.PublicKey
		want string
	}{
		{"none", nil, "edge-fra-01", f.nodePub, "none"},
		{"garbage", json.RawMessage("not json"), "edge-fra-01", f.nodePub, "report"},
		{"wrong key", raw, "edge-fra-01", f.node2Pub, "bad signature"},
		{"no key", raw, "edge-fra-01", nil, "bad signature"},
		{"short key", raw, "edge-fra-01", f.nodePub[:31], "bad signature"},
		{"wrong publisher", raw, "edge-ams-02", f.nodePub, "bad signature"},
		{"publisher name differs in case", raw, "EDGE-FRA-01", f.nodePub, "bad signature"},
		{"tampered body", remake([]byte(strings.Replace(string(sr.Body), `"ok":true`, `"ok":false`, 1)), sr.Sig), "edge-fra-01", f.nodePub, "bad signature"},
		{"tampered figures", remake([]byte(strings.Replace(string(sr.Body), `[100,`, `[900,`, 1)), sr.Sig), "edge-fra-01", f.nodePub, "bad signature"},
		{"healthy report, unhealthy body's signature", remake(sr.Body, func() []byte {
			var o SignedReport
			_ = json.Unmarshal(signed(unhealthy, f.node), &o)
			return o.Sig
		}()), "edge-fra-01", f.nodePub, "bad signature"},
		{"tampered signature", remake(sr.Body, append([]byte{sr.Sig[0] ^ 1}, sr.Sig[1:]...)), "edge-fra-01", f.nodePub, "bad signature"},
		{"no signature", remake(sr.Body, nil), "edge-fra-01", f.nodePub, "bad signature"},
		{"signed without the domain", remake(sr.Body, ed25519.Sign(f.node, sr.Body)), "edge-fra-01", f.nodePub, "bad signature"},
		{"signed with the control domain", remake(sr.Body, withDomain("rhizome-control-v1\n", sr.Body)), "edge-fra-01", f.nodePub, "bad signature"},
		{"signed by another node", signed(r, f.node2), "edge-fra-01", f.nodePub, "bad signature"},
		{"non-hash bundle", signed(badHash, f.node), "edge-fra-01", f.nodePub, "bundle"},
		{"upper-case bundle hash", signed(upper, f.node), "edge-fra-01", f.nodePub, "bundle"},
		{"signed body not an object", remake([]byte(`"x"`), withDomain("rhizome-report-v1\n", []byte(`"x"`))), "edge-fra-01", f.nodePub, "report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyReport(tt.raw, tt.node, tt.pub)
			if got != nil {
				t.Errorf("got a report along with the error: %+v", got)
			}
			wantErr(t, err, tt.want)
		})
	}
}

func TestSignReportBadKey(t *testing.T) {
	for _, key := range []ed25519.PrivateKey{nil, ed25519.PrivateKey("short")} {
		if _, err := SignReport(Report{Node: "n", Bundle: hashA}, key); err == nil {
			t.Errorf("SignReport with a %d-byte key: no error", len(key))
		}
	}
}

// A report and a control record are signed under different domains with the same node
// key, so neither passes for the other.
func TestReportNotAControlRecord(t *testing.T) {
	f := newFixture(t)
	raw, err := SignReport(Report{Node: "edge-fra-01", Bundle: hashA, At: at(1)}, f.node)
	if err != nil {
		t.Fatal(err)
	}
	var sr SignedReport
	if err := json.Unmarshal(raw, &sr); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier().Verify(Signed{Body: sr.Body, Sig: sr.Sig}); err == nil {
		t.Error("a report verified as a control record")
	}
	s := f.sign(t, unhealthy(hashA, "edge-fra-01", 1))
	fake, err := json.Marshal(SignedReport{Body: s.Body, Sig: s.Sig})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReport(fake, "edge-fra-01", f.nodePub); err == nil {
		t.Error("a control record verified as a report")
	}
}
