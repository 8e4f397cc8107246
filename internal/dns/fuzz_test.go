package dns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary packets to Answer: it must never panic, and whatever it
// returns must pack within the transport's limit.
func FuzzAnswer(f *testing.F) {
	seeds := []*dns.Msg{
		query("www.example.com.", dns.TypeA),
		query("foo.wild.example.com.", dns.TypeTXT),
		query("alias2.example.com.", dns.TypeAAAA),
		query("example.com.", dns.TypeNS),
		query("big.example.com.", dns.TypeTXT),
		query("deep.example.com.", dns.TypeANY),
		withECS(query("cdn.example.com.", dns.TypeA), "198.51.100.0/24"),
		withECS(query("cdn.example.com.", dns.TypeAAAA), "2001:db8::/56"),
		withEDNS(query("mid.example.com.", dns.TypeTXT), 4096),
	}
	for _, m := range seeds {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}, false)
	z := testZones(f)
	st := newFakeSteerer()
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		var m dns.Msg
		if err := m.Unpack(b); err != nil {
			return // miekg's server answers these FORMERR or drops them
		}
		r := Answer(z, st, &m, netip.MustParseAddr("192.0.2.1"), tcp)
		if r == nil {
			return
		}
		out, err := r.Pack()
		if err != nil {
			t.Fatalf("response does not pack: %v\n%v", err, r)
		}
		if !tcp && len(out) > maxUDPResponse {
			t.Fatalf("%d bytes over UDP", len(out))
		}
	})
}
