package control

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzVerify feeds arbitrary bytes through Decode, Verify and a Set: nothing panics, and a
// record that is accepted is checked, canonical and idempotent in a Set.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	for _, rec := range []Record{
		halt(hashA, 1), resume(hashA, 2), rollback(hashB, 3), unhealthy(hashA, "edge-fra-01", 4),
		unhealthy(hashA, "edge-new-99", 5), kill("waf", "shop", true, 6), kill("bots", "", false, 7),
	} {
		s := fx.sign(f, rec)
		f.Add(s.Encode())
		f.Add(s.Body)
	}
	f.Add([]byte(`{"body":"","sig":""}`))
	f.Add([]byte(`{"body":null,"sig":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	v := fx.verifier()
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			// Also try the bytes as a body, to reach Verify's checks past the signature.
			s = signBody(fx.op, b)
		}
		r, err := v.Verify(s)
		if err != nil {
			if r != nil {
				t.Fatalf("Verify returned a record and an error")
			}
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("accepted record fails Check: %v", err)
		}
		if canon, _ := json.Marshal(r); !bytes.Equal(canon, s.Body) {
			t.Fatalf("accepted body not canonical: %q", s.Body)
		}
		c := NewSet()
		if _, isNew, err := c.Add(v, s); err != nil || !isNew {
			t.Fatalf("Add: %v, %v", isNew, err)
		}
		if _, isNew, err := c.Add(v, s); err != nil || isNew {
			t.Fatalf("second Add: %v, %v", isNew, err)
		}
		_ = c.Bundle(r.Bundle)
		_ = Killed(c.Switches(), r.Stage, r.Site)
	})
}
