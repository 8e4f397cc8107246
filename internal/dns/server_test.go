package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer serves z on 127.0.0.1, port 0, until the test ends.
func startServer(t testing.TB, z *Zones, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := NewServer(z, cfg)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// exchange sends m over network ("udp" or "tcp") to addr.
func exchange(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s: %v", network, m.Question[0].Name, err)
	}
	return r
}

func TestServerUDPAndTCP(t *testing.T) {
	st := newFakeSteerer()
	s := startServer(t, testZones(t), Config{Steerer: st, RateLimit: -1})
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr() = %q", addr)
	}
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, addr, query("www.example.com.", dns.TypeA))
		if !r.Authoritative || r.RecursionAvailable || len(r.Answer) != 2 {
			t.Errorf("%s: %v", network, r)
		}
		r = exchange(t, network, addr, query("cdn.example.com.", dns.TypeA))
		if len(r.Answer) != 3 || !strings.HasPrefix(st.lastCall(), "cdn.example.com. 127.0.0.1 4 3") {
			t.Errorf("%s proxied: %v (steer %s)", network, r, st.lastCall())
		}
	}
	// The big TXT RRset: truncated over UDP, with or without EDNS 4096; whole over TCP.
	r := exchange(t, "udp", addr, query("big.example.com.", dns.TypeTXT))
	if !r.Truncated || len(r.Answer) >= 40 {
		t.Errorf("big over UDP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "udp", addr, withEDNS(query("big.example.com.", dns.TypeTXT), 4096))
	if !r.Truncated || r.IsEdns0() == nil {
		t.Errorf("big over UDP with EDNS 4096: TC %v, OPT %v", r.Truncated, r.IsEdns0())
	}
	r = exchange(t, "tcp", addr, query("big.example.com.", dns.TypeTXT))
	if r.Truncated || len(r.Answer) != 40 {
		t.Errorf("big over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "udp", addr, query("mid.example.com.", dns.TypeTXT))
	if !r.Truncated {
		t.Errorf("mid over UDP without EDNS: not truncated")
	}
	r = exchange(t, "udp", addr, withEDNS(query("mid.example.com.", dns.TypeTXT), 4096))
	if r.Truncated || len(r.Answer) != 8 || r.IsEdns0().UDPSize() != advertisedUDPSize {
		t.Errorf("mid over UDP with EDNS 4096: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	st1 := s.Stats()
	if st1.Queries != 9 || st1.Truncated != 3 {
		t.Errorf("stats %+v, want 9 queries, 3 truncated", st1)
	}
}

func TestServerSwap(t *testing.T) {
	s := startServer(t, nil, Config{RateLimit: -1})
	q := query("www.example.com.", dns.TypeA)
	if r := exchange(t, "udp", s.Addr(), q); r.Rcode != dns.RcodeRefused {
		t.Fatalf("no zones: %s", dns.RcodeToString[r.Rcode])
	}
	s.Swap(testZones(t))
	if r := exchange(t, "udp", s.Addr(), q); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
		t.Fatalf("after Swap: %v", r)
	}
	z2, err := Compile([]ZoneSpec{{Name: "example.com", NS: []string{"ns1"},
		Records: []RecordSpec{{Name: "www", Type: "A", Value: "198.51.100.9"}}}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Swap(z2)
	if r := exchange(t, "tcp", s.Addr(), q); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.51.100.9" {
		t.Fatalf("after the second Swap: %v", r)
	}
	s.Swap(nil)
	if r := exchange(t, "udp", s.Addr(), q); r.Rcode != dns.RcodeRefused {
		t.Fatalf("Swap(nil): %s", dns.RcodeToString[r.Rcode])
	}
	if got := s.Stats(); got.Queries != 4 || got.Refused != 2 {
		t.Errorf("stats %+v", got)
	}
}

func TestServerShutdownReleasesSockets(t *testing.T) {
	s := NewServer(testZones(t), Config{Logger: slog.New(slog.DiscardHandler)})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown before start: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("a second Start succeeded")
	}
	exchange(t, "tcp", addr, query("www.example.com.", dns.TypeA))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	if s.Addr() != "" {
		t.Errorf("Addr() after Shutdown = %q", s.Addr())
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP %s still bound: %v", addr, err)
	}
	pc.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP %s still bound: %v", addr, err)
	}
	ln.Close()
	// The same server starts again, on the same address.
	if err := s.Start(addr); err != nil {
		t.Fatal(err)
	}
	exchange(t, "udp", addr, query("www.example.com.", dns.TypeA))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestServerStartErrors(t *testing.T) {
	s := NewServer(nil, Config{})
	for _, addr := range []string{"nonsense", "127.0.0.1:99999"} {
		if err := s.Start(addr); err == nil || s.Addr() != "" {
			t.Errorf("Start(%q) = %v, Addr() = %q", addr, err, s.Addr())
		}
	}
	busy := startServer(t, nil, Config{})
	if err := s.Start(busy.Addr()); err == nil {
		t.Errorf("Start on a busy address succeeded")
	}
}

func TestServerRateLimit(t *testing.T) {
	s := NewServer(testZones(t), Config{RateLimit: 3, Logger: slog.New(slog.DiscardHandler)})
	var clock atomic.Int64 // the limiter's clock: no refill during the test
	clock.Store(time.Now().UnixNano())
	s.rl.now = func() time.Time { return time.Unix(0, clock.Load()) }
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addr()
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	ask := func() (*dns.Msg, error) {
		r, _, err := c.Exchange(query("www.example.com.", dns.TypeA), addr)
		return r, err
	}
	for i := range 3 {
		if r, err := ask(); err != nil || r.Truncated || len(r.Answer) != 2 {
			t.Fatalf("query %d under the limit: %v, %v", i, r, err)
		}
	}
	for i := range 4 { // over the limit: slip, drop, slip, drop
		r, err := ask()
		if i%2 == 0 && (err != nil || !r.Truncated || len(r.Answer) != 0) {
			t.Errorf("over the limit %d: want an empty TC=1 reply, got %v, %v", i, r, err)
		}
		var ne net.Error
		if i%2 == 1 && (err == nil || !errors.As(err, &ne) || !ne.Timeout()) {
			t.Errorf("over the limit %d: want no reply, got %v, %v", i, r, err)
		}
	}
	// TCP is never limited: the slipped client retries there.
	if r := exchange(t, "tcp", addr, query("www.example.com.", dns.TypeA)); len(r.Answer) != 2 {
		t.Errorf("TCP: %v", r)
	}
	if got := s.Stats(); got.RateLimited != 4 || got.Queries != 8 {
		t.Errorf("stats %+v, want 4 rate limited of 8", got)
	}
	// Time refills the bucket.
	clock.Add(int64(time.Second))
	if r, err := ask(); err != nil || r.Truncated {
		t.Errorf("after a second: %v, %v", r, err)
	}
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(2)
	l.now = func() time.Time { return now }
	var got []verdict
	for range 6 {
		got = append(got, l.check(netip.MustParseAddr("192.0.2.1")))
	}
	want := []verdict{allow, allow, slip, drop, slip, drop}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", got, want)
		}
	}
	if v := l.check(netip.MustParseAddr("192.0.2.200")); v != slip { // the same /24
		t.Errorf("same /24: %v, want slip", v)
	}
	if v := l.check(netip.MustParseAddr("192.0.3.1")); v != allow {
		t.Errorf("another /24: %v, want allow", v)
	}
	if v := l.check(netip.MustParseAddr("2001:db8:0:ff::1")); v != allow {
		t.Errorf("IPv6: %v", v)
	}
	if v := l.check(netip.MustParseAddr("2001:db8:0:ff:1::1")); v != allow { // the same /56, second token
		t.Errorf("IPv6 same /56: %v", v)
	}
	if v := l.check(netip.MustParseAddr("2001:db8:0:ff::2")); v != slip {
		t.Errorf("IPv6 same /56 over the limit: %v", v)
	}
	now = now.Add(500 * time.Millisecond) // one token back
	if v := l.check(netip.MustParseAddr("192.0.2.1")); v != allow {
		t.Errorf("after refill: %v", v)
	}
	// The map stays bounded whatever the number of clients.
	l.max = 100
	for i := range 1000 {
		l.check(netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i), 1}))
	}
	if n := l.size(); n > 100 {
		t.Errorf("%d entries, limit 100", n)
	}
}

func TestServeStats(t *testing.T) {
	st := newFakeSteerer()
	st.failOpen = true
	s := NewServer(testZones(t), Config{Steerer: st, Logger: slog.New(slog.DiscardHandler), RateLimit: -1})
	for _, q := range []*dns.Msg{
		query("cdn.example.com.", dns.TypeA),     // fail open
		query("nope.example.com.", dns.TypeA),    // NXDOMAIN
		query("mail.example.com.", dns.TypeAAAA), // NODATA
		query("example.org.", dns.TypeA),         // REFUSED
		query("big.example.com.", dns.TypeTXT),   // truncated
	} {
		s.serve(&fakeWriter{remote: udpFrom("192.0.2.9")}, q)
	}
	w := &fakeWriter{remote: tcpFrom("192.0.2.9")}
	s.serve(w, query("big.example.com.", dns.TypeTXT)) // not truncated over TCP
	if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 40 {
		t.Errorf("TCP: %d responses", len(w.msgs))
	}
	want := Stats{Queries: 6, Refused: 1, NXDomain: 1, NoData: 1, FailOpen: 1, Truncated: 1}
	if got := s.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

type panicSteerer struct{}

func (panicSteerer) Steer(string, netip.Addr, int, int) ([]netip.Addr, bool) { panic("boom") }

func TestServeSurvivesSteererPanic(t *testing.T) {
	s := NewServer(testZones(t), Config{Steerer: panicSteerer{}, Logger: slog.New(slog.DiscardHandler)})
	w := &fakeWriter{remote: udpFrom("192.0.2.9")}
	s.serve(w, query("cdn.example.com.", dns.TypeA))
	if len(w.msgs) != 0 {
		t.Errorf("a response after a panic: %v", w.msgs)
	}
}

func TestServerMalformed(t *testing.T) {
	s := startServer(t, testZones(t), Config{RateLimit: -1})
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A header that claims one question and carries none: FORMERR, and the server lives.
	if _, err := conn.Write([]byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no FORMERR: %v", err)
	}
	var r dns.Msg
	if err := r.Unpack(buf[:n]); err != nil || r.Rcode != dns.RcodeFormatError || r.Id != 0x1234 {
		t.Errorf("reply %v, %v: want FORMERR", r, err)
	}
	if r := exchange(t, "udp", s.Addr(), query("www.example.com.", dns.TypeA)); len(r.Answer) != 2 {
		t.Errorf("after garbage: %v", r)
	}
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install dnsutils)")
	}
	s := startServer(t, testZones(t), Config{})
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, tcp := range []string{"+notcp", "+tcp"} {
		out, err := exec.Command(dig, "@127.0.0.1", "-p", port, "+norec", "+time=2", "+tries=1", tcp, "example.com", "SOA").CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", tcp, err, out)
		}
		text := string(out)
		for _, want := range []string{"status: NOERROR", "flags: qr aa;", "ns1.example.com. hostmaster.example.com. 7 3600 600 1209600 60"} {
			if !strings.Contains(text, want) {
				t.Errorf("dig %s output lacks %q:\n%s", tcp, want, text)
			}
		}
	}
	// dig follows TC=1 over TCP by itself.
	out, err := exec.Command(dig, "@127.0.0.1", "-p", port, "+norec", "+time=2", "+tries=1", "+bufsize=1232", "big.example.com", "TXT").CombinedOutput()
	if err != nil {
		t.Fatalf("dig big: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ANSWER: 40") {
		t.Errorf("dig big: want 40 answers after the TCP retry:\n%s", out)
	}
}

// TestServerWildcardAddress: bound to every address, UDP is served by miekg/dns's loop,
// which sends each response from the address its query came to; bound to one address, by
// the server's own loop. Both answer alike.
func TestServerWildcardAddress(t *testing.T) {
	s := NewServer(testZones(t), Config{Logger: slog.New(slog.DiscardHandler), RateLimit: -1})
	if err := s.Start("0.0.0.0:0"); err != nil {
		t.Skipf("cannot bind 0.0.0.0: %v", err)
	}
	defer s.Shutdown(context.Background())
	if s.fast != nil {
		t.Fatal("the own UDP loop serves a wildcard address")
	}
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, "127.0.0.1:"+port, query("www.example.com.", dns.TypeA))
		if !r.Authoritative || len(r.Answer) != 2 {
			t.Errorf("%s on 0.0.0.0: %v", network, r)
		}
	}
	one := startServer(t, testZones(t), Config{RateLimit: -1})
	if one.fast == nil {
		t.Fatal("a server bound to 127.0.0.1 does not use its own UDP loop")
	}
}
