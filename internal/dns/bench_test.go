package dns

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkAnswerA is the pure core on a static A record.
func BenchmarkAnswerA(b *testing.B) {
	z := testZones(b)
	q := query("www.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if r := Answer(z, nil, q, client, false); len(r.Answer) != 2 {
			b.Fatal(r)
		}
	}
}

// BenchmarkServeUDP is one query and its response through a real UDP socket.
func BenchmarkServeUDP(b *testing.B) {
	s := startServer(b, testZones(b), Config{RateLimit: -1})
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	conn, err := c.Dial(s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := query("www.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		r, _, err := c.ExchangeWithConn(q, conn)
		if err != nil || len(r.Answer) != 2 {
			b.Fatal(r, err)
		}
	}
}
