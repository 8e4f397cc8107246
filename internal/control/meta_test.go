package control_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"rhizome/internal/bundle"
	"rhizome/internal/control"
	"rhizome/internal/mesh"
)

// A node's signed report sits in its mesh metadata next to its region, provider, fetch URL
// and public key, and memberlist limits the whole to 512 bytes. This guards the budget for
// a realistic node, in the normal and the leaving form of the metadata.
func TestReportFitsMeta(t *testing.T) {
	pub, key, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name   string
		report control.Report
		fetch  string
	}{
		{"realistic", control.Report{
			Node: "edge-fra-01", Bundle: hash, Serial: 1234, Healthy: true,
			Figures: [4]uint64{1e12, 1e12, 1e12, 1e12}, At: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
		}, "https://edge-fra-01.example.net:7947"},
		{"busy node", control.Report{
			Node: "edge-fra-01", Bundle: hash, Serial: 1e6, Healthy: false,
			Figures: [4]uint64{1e15, 1e13, 1e10, 1e13}, At: time.Date(2099, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli(),
		}, "https://edge-fra-01.example.net:7947"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := control.SignReport(tt.report, key)
			if err != nil {
				t.Fatal(err)
			}
			meta := mesh.Meta{Region: "eu-central", Provider: "hetzner", FetchURL: tt.fetch, Key: bundle.FormatPublicKey(pub), Report: raw}
			// As mesh encodes it (encodeMeta: json.Marshal of the Meta, plus "leaving" when
			// the node leaves).
			plain, err := json.Marshal(meta)
			if err != nil {
				t.Fatal(err)
			}
			leaving, err := json.Marshal(struct {
				mesh.Meta
				Leaving bool `json:"leaving,omitempty"`
			}{meta, true})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{plain, leaving} {
				if len(b) > 512 || len(b) > mesh.MaxMetaSize {
					t.Errorf("metadata is %d bytes, limit 512 (mesh.MaxMetaSize %d): %s", len(b), mesh.MaxMetaSize, b)
				}
			}
			t.Logf("metadata %d bytes (%d leaving, %d to spare), report %d", len(plain), len(leaving), 512-len(leaving), len(raw))

			// What comes out of the metadata still verifies.
			var back mesh.Meta
			if err := json.Unmarshal(plain, &back); err != nil {
				t.Fatal(err)
			}
			k, err := bundle.ParsePublicKey(back.Key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := control.VerifyReport(back.Report, "edge-fra-01", k)
			if err != nil || *got != tt.report {
				t.Errorf("VerifyReport after the metadata round trip = %+v, %v", got, err)
			}
		})
	}
}
