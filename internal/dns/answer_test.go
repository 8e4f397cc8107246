package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	soaNeg    = "example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 1209600 60"
	soaSubNeg = "sub.example.com. 300 IN SOA ns1.example.com. dns.example.com. 42 3600 600 1209600 300"
)

var client = netip.MustParseAddr("192.0.2.200")

func TestAnswer(t *testing.T) {
	z := testZones(t)
	tests := []struct {
		name   string
		q      *dns.Msg
		tcp    bool
		nilSt  bool // no Steerer
		rcode  int
		aa     bool
		answer []string
		ns     []string
		extra  []string
	}{
		// Static records of each type.
		{name: "A", q: query("www.example.com.", dns.TypeA), aa: true,
			answer: []string{"www.example.com. 60 IN A 192.0.2.10", "www.example.com. 60 IN A 192.0.2.11"}},
		{name: "AAAA", q: query("www.example.com.", dns.TypeAAAA), aa: true,
			answer: []string{"www.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "apex A", q: query("example.com.", dns.TypeA), aa: true,
			answer: []string{"example.com. 3600 IN A 192.0.2.1"}},
		{name: "MX relative to the zone", q: query("example.com.", dns.TypeMX), aa: true,
			answer: []string{"example.com. 3600 IN MX 10 mail.example.com."}},
		{name: "TXT quoted", q: query("example.com.", dns.TypeTXT), aa: true,
			answer: []string{`example.com. 3600 IN TXT "v=spf1 -all"`}},
		{name: "CAA", q: query("example.com.", dns.TypeCAA), aa: true,
			answer: []string{`example.com. 3600 IN CAA 0 issue "letsencrypt.org"`}},
		{name: "SRV", q: query("_sip._tcp.example.com.", dns.TypeSRV), aa: true,
			answer: []string{"_sip._tcp.example.com. 3600 IN SRV 10 60 5060 sip.example.com."}},
		{name: "case-insensitive, case kept", q: query("WwW.ExAmPlE.CoM.", dns.TypeA), aa: true,
			answer: []string{"WwW.ExAmPlE.CoM. 60 IN A 192.0.2.10", "WwW.ExAmPlE.CoM. 60 IN A 192.0.2.11"}},
		{name: "class ANY", q: func() *dns.Msg {
			m := query("mail.example.com.", dns.TypeA)
			m.Question[0].Qclass = dns.ClassANY
			return m
		}(),
			aa: true, answer: []string{"mail.example.com. 3600 IN A 192.0.2.25"}},

		// Negative answers.
		{name: "NXDOMAIN", q: query("nope.example.com.", dns.TypeA), aa: true, rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "NODATA", q: query("mail.example.com.", dns.TypeAAAA), aa: true, ns: []string{soaNeg}},
		{name: "empty non-terminal is NODATA", q: query("b.deep.example.com.", dns.TypeA), aa: true, ns: []string{soaNeg}},
		{name: "empty non-terminal two up", q: query("deep.example.com.", dns.TypeTXT), aa: true, ns: []string{soaNeg}},
		{name: "below a leaf is NXDOMAIN", q: query("x.a.b.deep.example.com.", dns.TypeA), aa: true, rcode: dns.RcodeNameError, ns: []string{soaNeg}},

		// Wildcards (RFC 4592).
		{name: "wildcard", q: query("foo.wild.example.com.", dns.TypeA), aa: true,
			answer: []string{"foo.wild.example.com. 3600 IN A 192.0.2.99"}},
		{name: "wildcard two labels down", q: query("a.b.wild.example.com.", dns.TypeTXT), aa: true,
			answer: []string{`a.b.wild.example.com. 3600 IN TXT "wild"`}},
		{name: "wildcard NODATA", q: query("foo.wild.example.com.", dns.TypeMX), aa: true, ns: []string{soaNeg}},
		{name: "existing name beats wildcard", q: query("exists.wild.example.com.", dns.TypeA), aa: true, ns: []string{soaNeg}},
		{name: "wildcard's parent is an empty non-terminal", q: query("wild.example.com.", dns.TypeA), aa: true, ns: []string{soaNeg}},
		{name: "below an existing name no wildcard", q: query("x.exists.wild.example.com.", dns.TypeA), aa: true,
			rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "wildcard asked literally", q: query("*.wild.example.com.", dns.TypeTXT), aa: true,
			answer: []string{`*.wild.example.com. 3600 IN TXT "wild"`}},
		{name: "wildcard CNAME", q: query("foo.cn.example.com.", dns.TypeA), aa: true,
			answer: []string{"foo.cn.example.com. 3600 IN CNAME www.example.com.",
				"www.example.com. 60 IN A 192.0.2.10", "www.example.com. 60 IN A 192.0.2.11"}},

		// CNAMEs.
		{name: "CNAME followed", q: query("alias.example.com.", dns.TypeA), aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com.",
				"www.example.com. 60 IN A 192.0.2.10", "www.example.com. 60 IN A 192.0.2.11"}},
		{name: "CNAME chain", q: query("alias2.example.com.", dns.TypeAAAA), aa: true,
			answer: []string{"alias2.example.com. 3600 IN CNAME alias.example.com.",
				"alias.example.com. 3600 IN CNAME www.example.com.", "www.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "CNAME asked", q: query("alias.example.com.", dns.TypeCNAME), aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com."}},
		{name: "CNAME out of the zones", q: query("ext.example.com.", dns.TypeA), aa: true,
			answer: []string{"ext.example.com. 3600 IN CNAME www.example.net."}},
		{name: "CNAME loop stops", q: query("loop1.example.com.", dns.TypeA), aa: true,
			answer: []string{"loop1.example.com. 3600 IN CNAME loop2.example.com.", "loop2.example.com. 3600 IN CNAME loop1.example.com."}},
		{name: "CNAME to nothing is NXDOMAIN (RFC 6604)", q: query("dangling.example.com.", dns.TypeA), aa: true,
			rcode: dns.RcodeNameError, answer: []string{"dangling.example.com. 3600 IN CNAME nothing.example.com."}, ns: []string{soaNeg}},
		{name: "CNAME into another served zone", q: query("tosub.example.com.", dns.TypeA), aa: true,
			answer: []string{"tosub.example.com. 3600 IN CNAME www.sub.example.com.", "www.sub.example.com. 300 IN A 198.51.100.1"}},
		{name: "CNAME to NODATA in another zone", q: query("tosub.example.com.", dns.TypeMX), aa: true,
			answer: []string{"tosub.example.com. 3600 IN CNAME www.sub.example.com."}, ns: []string{soaSubNeg}},
		{name: "CNAME to a proxied name", q: query("tocdn.example.com.", dns.TypeA), aa: true,
			answer: []string{"tocdn.example.com. 3600 IN CNAME cdn.example.com.", "cdn.example.com. 20 IN A 203.0.113.1",
				"cdn.example.com. 20 IN A 203.0.113.2", "cdn.example.com. 20 IN A 203.0.113.3"}},

		// Apex SOA and NS, with glue.
		{name: "SOA", q: query("example.com.", dns.TypeSOA), aa: true,
			answer: []string{"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 1209600 60"}},
		{name: "SOA of the child zone", q: query("SUB.example.com.", dns.TypeSOA), aa: true,
			answer: []string{"SUB.example.com. 300 IN SOA ns1.example.com. dns.example.com. 42 3600 600 1209600 300"}},
		{name: "NS with glue, static and proxied", q: query("example.com.", dns.TypeNS), aa: true,
			answer: []string{"example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.com.",
				"example.com. 3600 IN NS ns.other.net."},
			extra: []string{"ns1.example.com. 3600 IN A 192.0.2.53", "ns1.example.com. 3600 IN AAAA 2001:db8::53",
				"ns2.example.com. 30 IN A 203.0.113.1", "ns2.example.com. 30 IN A 203.0.113.2",
				"ns2.example.com. 30 IN AAAA 2001:db8:cd::1"}},
		{name: "NS glue across zones", q: query("sub.example.com.", dns.TypeNS), aa: true,
			answer: []string{"sub.example.com. 300 IN NS ns1.example.com."},
			extra:  []string{"ns1.example.com. 3600 IN A 192.0.2.53", "ns1.example.com. 3600 IN AAAA 2001:db8::53"}},
		{name: "NS below the apex is NODATA", q: query("www.example.com.", dns.TypeNS), aa: true, ns: []string{soaNeg}},

		// Proxied names.
		{name: "proxied A", q: query("cdn.example.com.", dns.TypeA), aa: true,
			answer: []string{"cdn.example.com. 20 IN A 203.0.113.1", "cdn.example.com. 20 IN A 203.0.113.2", "cdn.example.com. 20 IN A 203.0.113.3"}},
		{name: "proxied AAAA", q: query("cdn.example.com.", dns.TypeAAAA), aa: true,
			answer: []string{"cdn.example.com. 20 IN AAAA 2001:db8:cd::1"}},
		{name: "proxied MX is NODATA", q: query("cdn.example.com.", dns.TypeMX), aa: true, ns: []string{soaNeg}},
		{name: "proxied wildcard", q: query("a.edge.example.com.", dns.TypeA), aa: true,
			answer: []string{"a.edge.example.com. 30 IN A 203.0.113.1", "a.edge.example.com. 30 IN A 203.0.113.2"}},
		{name: "proxied without a Steerer is NODATA", q: query("cdn.example.com.", dns.TypeA), nilSt: true, aa: true, ns: []string{soaNeg}},

		// ANY (RFC 8482).
		{name: "ANY over UDP is HINFO", q: query("www.example.com.", dns.TypeANY), aa: true,
			answer: []string{`www.example.com. 3600 IN HINFO "RFC8482" ""`}},
		{name: "ANY over TCP is everything", q: query("www.example.com.", dns.TypeANY), tcp: true, aa: true,
			answer: []string{"www.example.com. 60 IN A 192.0.2.10", "www.example.com. 60 IN A 192.0.2.11",
				"www.example.com. 3600 IN AAAA 2001:db8::10"}},
		{name: "ANY at a CNAME", q: query("alias.example.com.", dns.TypeANY), tcp: true, aa: true,
			answer: []string{"alias.example.com. 3600 IN CNAME www.example.com."}},
		{name: "ANY at an empty non-terminal", q: query("deep.example.com.", dns.TypeANY), aa: true, ns: []string{soaNeg}},
		{name: "ANY of nothing", q: query("nope.example.com.", dns.TypeANY), aa: true, rcode: dns.RcodeNameError, ns: []string{soaNeg}},

		// Refusals and errors.
		{name: "not our zone", q: query("www.example.net.", dns.TypeA), rcode: dns.RcodeRefused},
		{name: "a suffix that is not a label", q: query("notexample.com.", dns.TypeA), rcode: dns.RcodeRefused},
		{name: "root", q: query(".", dns.TypeNS), rcode: dns.RcodeRefused},
		{name: "class CH", q: func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(),
			rcode: dns.RcodeRefused},
		{name: "AXFR", q: query("example.com.", dns.TypeAXFR), tcp: true, rcode: dns.RcodeRefused},
		{name: "NOTIFY", q: func() *dns.Msg { m := query("example.com.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }(),
			rcode: dns.RcodeNotImplemented},
		{name: "UPDATE", q: func() *dns.Msg { m := query("example.com.", dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m }(),
			rcode: dns.RcodeNotImplemented},
		{name: "no question", q: &dns.Msg{MsgHdr: dns.MsgHdr{Id: 9}}, rcode: dns.RcodeFormatError},
		{name: "two questions", q: func() *dns.Msg {
			m := query("example.com.", dns.TypeSOA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), rcode: dns.RcodeFormatError},
		{name: "two OPT", q: func() *dns.Msg {
			m := withEDNS(query("example.com.", dns.TypeSOA), 1232)
			m.Extra = append(m.Extra, m.Extra[0])
			return m
		}(), rcode: dns.RcodeFormatError},
		{name: "EDNS version 1 is BADVERS", q: func() *dns.Msg {
			m := withEDNS(query("example.com.", dns.TypeSOA), 1232)
			m.IsEdns0().SetVersion(1)
			return m
		}(), rcode: dns.RcodeBadVers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st Steerer = newFakeSteerer()
			if tc.nilSt {
				st = nil
			}
			tc.q.Id = 4242
			tc.q.RecursionDesired = true
			r := Answer(z, st, tc.q, client, tc.tcp)
			if r == nil {
				t.Fatal("no response")
			}
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if r.Id != 4242 || !r.Response || !r.RecursionDesired || r.RecursionAvailable {
				t.Errorf("header id=%d qr=%v rd=%v ra=%v, want 4242 true true false", r.Id, r.Response, r.RecursionDesired, r.RecursionAvailable)
			}
			if r.Authoritative != tc.aa {
				t.Errorf("aa %v, want %v", r.Authoritative, tc.aa)
			}
			check := func(section string, got []dns.RR, want []string) {
				t.Helper()
				if g := rrStrings(got); !slices.Equal(g, want) {
					t.Errorf("%s:\n got %q\nwant %q", section, g, want)
				}
			}
			check("answer", r.Answer, tc.answer)
			check("authority", r.Ns, tc.ns)
			check("additional", r.Extra, tc.extra)
			if _, err := r.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
}

func TestAnswerNil(t *testing.T) {
	if Answer(testZones(t), nil, nil, client, false) != nil {
		t.Error("a nil query got a response")
	}
	resp := query("example.com.", dns.TypeA)
	resp.Response = true
	if Answer(testZones(t), nil, resp, client, false) != nil {
		t.Error("a response got a response")
	}
	for _, z := range []*Zones{nil, {}} {
		if r := Answer(z, nil, query("example.com.", dns.TypeA), client, false); r.Rcode != dns.RcodeRefused || r.Authoritative {
			t.Errorf("no zones: %v", r)
		}
	}
}

func TestAnswerSteering(t *testing.T) {
	z := testZones(t)
	t.Run("client is the source address", func(t *testing.T) {
		st := newFakeSteerer()
		Answer(z, st, query("CDN.example.com.", dns.TypeAAAA), client, false)
		if got, want := st.lastCall(), "cdn.example.com. 192.0.2.200 6 3"; got != want {
			t.Errorf("steer(%s), want steer(%s)", got, want)
		}
	})
	t.Run("wildcard steers the query name", func(t *testing.T) {
		st := newFakeSteerer()
		Answer(z, st, query("X.edge.example.com.", dns.TypeA), client, false)
		if got, want := st.lastCall(), "x.edge.example.com. 192.0.2.200 4 2"; got != want {
			t.Errorf("steer(%s), want steer(%s)", got, want)
		}
	})
	t.Run("ECS replaces the client and is echoed with scope", func(t *testing.T) {
		st := newFakeSteerer()
		r := Answer(z, st, withECS(query("cdn.example.com.", dns.TypeA), "198.51.100.77/24"), client, false)
		if got, want := st.lastCall(), "cdn.example.com. 198.51.100.0 4 3"; got != want {
			t.Errorf("steer(%s), want steer(%s)", got, want)
		}
		e := ecsOf(r)
		if e == nil || e.SourceNetmask != 24 || e.SourceScope != 24 || !e.Address.Equal(netip.MustParseAddr("198.51.100.0").AsSlice()) {
			t.Errorf("echoed ECS %v, want 198.51.100.0/24/24", e)
		}
		if o := r.IsEdns0(); o == nil || o.UDPSize() != advertisedUDPSize {
			t.Errorf("OPT %v, want UDP size %d", o, advertisedUDPSize)
		}
	})
	t.Run("ECS IPv6", func(t *testing.T) {
		st := newFakeSteerer()
		r := Answer(z, st, withECS(query("cdn.example.com.", dns.TypeA), "2001:db8:1234::/48"), client, false)
		if got, want := st.lastCall(), "cdn.example.com. 2001:db8:1234:: 4 3"; got != want {
			t.Errorf("steer(%s), want steer(%s)", got, want)
		}
		if e := ecsOf(r); e == nil || e.Family != 2 || e.SourceScope != 48 {
			t.Errorf("echoed ECS %v", e)
		}
	})
	t.Run("ECS on a static answer has scope 0", func(t *testing.T) {
		r := Answer(z, newFakeSteerer(), withECS(query("www.example.com.", dns.TypeA), "198.51.100.77/24"), client, false)
		if e := ecsOf(r); e == nil || e.SourceNetmask != 24 || e.SourceScope != 0 {
			t.Errorf("echoed ECS %v, want scope 0", e)
		}
	})
	t.Run("ECS /0 keeps the source address", func(t *testing.T) {
		st := newFakeSteerer()
		Answer(z, st, withECS(query("cdn.example.com.", dns.TypeA), "0.0.0.0/0"), client, false)
		if got, want := st.lastCall(), "cdn.example.com. 192.0.2.200 4 3"; got != want {
			t.Errorf("steer(%s), want steer(%s)", got, want)
		}
	})
	t.Run("malformed ECS is FORMERR", func(t *testing.T) {
		m := withECS(query("cdn.example.com.", dns.TypeA), "198.51.100.0/24")
		ecsOf(m).SourceNetmask = 33
		if r := Answer(z, newFakeSteerer(), m, client, false); r.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("no address of the family is NODATA", func(t *testing.T) {
		st := newFakeSteerer()
		st.v6 = nil
		r := Answer(z, st, query("cdn.example.com.", dns.TypeAAAA), client, false)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Errorf("want NODATA with the SOA: %v", r)
		}
	})
	t.Run("fail open is reported", func(t *testing.T) {
		st := newFakeSteerer()
		st.failOpen = true
		r, out := answer(z, st, query("cdn.example.com.", dns.TypeA), client, false)
		if !out.failOpen || len(r.Answer) != 3 {
			t.Errorf("failOpen %v with %d answers, want true with 3", out.failOpen, len(r.Answer))
		}
	})
}

func TestAnswerProxiedApex(t *testing.T) {
	specs := []ZoneSpec{{Name: "example.com", NS: []string{"ns1.example.net"},
		Records: []RecordSpec{{Name: "@", Type: "MX", Value: "10 mx.example.net."}, {Name: "@", Type: "TXT", Value: "hello"}},
		Proxied: []ProxiedSpec{{Name: "@", TTL: 10 * time.Second, Answers: 1}}}}
	z, err := Compile(specs, 1)
	if err != nil {
		t.Fatal(err)
	}
	st := newFakeSteerer()
	for _, tc := range []struct {
		qtype uint16
		want  string
	}{
		{dns.TypeA, "example.com. 10 IN A 203.0.113.1"},
		{dns.TypeMX, "example.com. 300 IN MX 10 mx.example.net."},
		{dns.TypeSOA, "example.com. 300 IN SOA ns1.example.net. hostmaster.example.com. 1 3600 600 1209600 300"},
	} {
		r := Answer(z, st, query("example.com.", tc.qtype), client, false)
		if got := rrStrings(r.Answer); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: %q, want %q", dns.TypeToString[tc.qtype], got, tc.want)
		}
	}
}

func TestAnswerCNAMEChainLimit(t *testing.T) {
	r := Answer(testZones(t), nil, query("c1.example.com.", dns.TypeA), client, false)
	if len(r.Answer) != maxCNAMEChain || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("%d records (%s), want %d CNAMEs", len(r.Answer), dns.RcodeToString[r.Rcode], maxCNAMEChain)
	}
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != dns.TypeCNAME {
			t.Errorf("%v: want only CNAMEs", rr)
		}
	}
}

func TestAnswerTruncation(t *testing.T) {
	z := testZones(t)
	for _, tc := range []struct {
		name      string
		q         *dns.Msg
		tcp       bool
		truncated bool
		answers   int // -1: fewer than all, any number
	}{
		{"big over UDP", query("big.example.com.", dns.TypeTXT), false, true, -1},
		{"big over UDP with EDNS 4096", withEDNS(query("big.example.com.", dns.TypeTXT), 4096), false, true, -1},
		{"big over TCP", query("big.example.com.", dns.TypeTXT), true, false, 40},
		{"mid over UDP", query("mid.example.com.", dns.TypeTXT), false, true, -1},
		{"mid over UDP with EDNS 1232", withEDNS(query("mid.example.com.", dns.TypeTXT), 1232), false, true, -1},
		{"mid over UDP with EDNS 4096", withEDNS(query("mid.example.com.", dns.TypeTXT), 4096), false, false, 8},
		{"EDNS size below 512 means 512", withEDNS(query("www.example.com.", dns.TypeA), 100), false, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Answer(z, nil, tc.q, client, tc.tcp)
			if r.Truncated != tc.truncated {
				t.Errorf("TC %v, want %v", r.Truncated, tc.truncated)
			}
			if tc.answers >= 0 && len(r.Answer) != tc.answers {
				t.Errorf("%d answers, want %d", len(r.Answer), tc.answers)
			}
			b, err := r.Pack()
			if err != nil {
				t.Fatal(err)
			}
			limit := 512
			if o := tc.q.IsEdns0(); o != nil {
				limit = max(512, int(o.UDPSize()))
				if r.IsEdns0() == nil {
					t.Error("no OPT in the response to an EDNS query")
				}
			}
			if !tc.tcp && len(b) > limit {
				t.Errorf("%d bytes over UDP, limit %d", len(b), limit)
			}
		})
	}
}

func TestAnswerDoesNotAliasZones(t *testing.T) {
	z := testZones(t)
	r := Answer(z, nil, query("www.example.com.", dns.TypeA), client, false)
	r.Answer[0].Header().Ttl = 1
	r.Answer[0].(*dns.A).A[0] = 10
	r = Answer(z, nil, query("www.example.com.", dns.TypeA), client, false)
	if got := rrStrings(r.Answer)[0]; !strings.HasPrefix(got, "www.example.com. 60 IN A 192.") {
		t.Errorf("the zone changed under a response: %s", got)
	}
}
