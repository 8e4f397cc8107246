package dns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testSerial is the bundle serial the test zones compile with.
const testSerial = 7

// testSpecs are the zones most tests serve: every rule of Answer has a name here.
func testSpecs() []ZoneSpec {
	recs := []RecordSpec{
		{Name: "@", Type: "A", Value: "192.0.2.1"},
		{Name: "@", Type: "MX", Value: "10 mail"},
		{Name: "@", Type: "TXT", Value: "v=spf1 -all"},
		{Name: "@", Type: "CAA", Value: `0 issue "letsencrypt.org"`},
		{Name: "ns1", Type: "A", Value: "192.0.2.53"},
		{Name: "ns1", Type: "AAAA", Value: "2001:db8::53"},
		{Name: "www", Type: "A", Value: "192.0.2.10", TTL: time.Minute},
		{Name: "www", Type: "A", Value: "192.0.2.11", TTL: time.Minute},
		{Name: "www.example.com.", Type: "AAAA", Value: "2001:db8::10"},
		{Name: "mail", Type: "A", Value: "192.0.2.25"},
		{Name: "_sip._tcp", Type: "SRV", Value: "10 60 5060 sip.example.com."},
		{Name: "alias", Type: "CNAME", Value: "www"},
		{Name: "alias2", Type: "CNAME", Value: "alias.example.com."},
		{Name: "ext", Type: "CNAME", Value: "www.example.net."},
		{Name: "loop1", Type: "CNAME", Value: "loop2"},
		{Name: "loop2", Type: "CNAME", Value: "loop1"},
		{Name: "dangling", Type: "CNAME", Value: "nothing"},
		{Name: "tocdn", Type: "CNAME", Value: "cdn"},
		{Name: "tosub", Type: "CNAME", Value: "www.sub"},
		{Name: "*.wild", Type: "A", Value: "192.0.2.99"},
		{Name: "*.wild", Type: "TXT", Value: "wild"},
		{Name: "exists.wild", Type: "TXT", Value: "here"},
		{Name: "a.b.deep", Type: "A", Value: "192.0.2.77"},
		{Name: "*.cn", Type: "CNAME", Value: "www"},
		{Name: "c10", Type: "CNAME", Value: "www"},
	}
	for i := 1; i < 10; i++ { // c1 -> c2 -> ... -> c10 -> www: longer than maxCNAMEChain
		recs = append(recs, RecordSpec{Name: fmt.Sprintf("c%d", i), Type: "CNAME", Value: fmt.Sprintf("c%d", i+1)})
	}
	for i := range 40 { // 40 x 200 bytes: needs TCP
		recs = append(recs, RecordSpec{Name: "big", Type: "TXT", Value: fmt.Sprintf("%03d", i) + strings.Repeat("x", 197)})
	}
	for i := range 8 { // 8 x 200 bytes: fits in 4096, not in 512 or 1232
		recs = append(recs, RecordSpec{Name: "mid", Type: "TXT", Value: fmt.Sprintf("%03d", i) + strings.Repeat("y", 197)})
	}
	return []ZoneSpec{
		{
			Name: "Example.COM", TTL: time.Hour,
			NS:      []string{"ns1", "ns2.example.com.", "ns.other.net"},
			SOA:     SOASpec{Minimum: time.Minute},
			Records: recs,
			Proxied: []ProxiedSpec{
				{Name: "cdn", TTL: 20 * time.Second, Answers: 3},
				{Name: "ns2"},
				{Name: "*.edge"},
			},
		},
		{
			Name: "sub.example.com.", NS: []string{"ns1.example.com"},
			SOA:     SOASpec{Serial: 42, RName: "dns@example.com"},
			Records: []RecordSpec{{Name: "www", Type: "A", Value: "198.51.100.1"}},
		},
	}
}

// testZones compiles testSpecs.
func testZones(t testing.TB) *Zones {
	t.Helper()
	z, err := Compile(testSpecs(), testSerial)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return z
}

// fakeSteerer answers with fixed addresses and records its calls.
type fakeSteerer struct {
	v4, v6   []netip.Addr
	failOpen bool

	mu    sync.Mutex
	calls []string // "name client family max"
}

func newFakeSteerer() *fakeSteerer {
	return &fakeSteerer{
		v4: []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2"),
			netip.MustParseAddr("203.0.113.3"), netip.MustParseAddr("203.0.113.4"),
			netip.MustParseAddr("2001:db8::bad")}, // the wrong family: ignored
		v6: []netip.Addr{netip.MustParseAddr("2001:db8:cd::1")},
	}
}

func (f *fakeSteerer) Steer(name string, client netip.Addr, family int, max int) ([]netip.Addr, bool) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %d %d", name, client, family, max))
	f.mu.Unlock()
	if family == 4 {
		return f.v4, f.failOpen // more than max: Answer must cut
	}
	return f.v6, f.failOpen
}

func (f *fakeSteerer) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

// query builds a query without EDNS.
func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// withEDNS adds an OPT record with the UDP size.
func withEDNS(m *dns.Msg, size uint16) *dns.Msg {
	m.SetEdns0(size, false)
	return m
}

// withECS adds an OPT record with a Client Subnet option for prefix.
func withECS(m *dns.Msg, prefix string) *dns.Msg {
	p := netip.MustParsePrefix(prefix)
	e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
	if p.Addr().Is6() {
		e.Family = 2
	}
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	o.Option = append(o.Option, e)
	return m
}

// rrStrings renders records one per string, fields separated by single spaces.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

// ecsOf returns the Client Subnet option of m's OPT, nil when none.
func ecsOf(m *dns.Msg) *dns.EDNS0_SUBNET {
	if o := m.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if s, ok := e.(*dns.EDNS0_SUBNET); ok {
				return s
			}
		}
	}
	return nil
}

// fakeWriter is a dns.ResponseWriter that keeps what is written.
type fakeWriter struct {
	remote net.Addr
	msgs   []*dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error   { w.msgs = append(w.msgs, m); return nil }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

func udpFrom(ip string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: 40000} }
func tcpFrom(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
