package dns

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Steerer picks the addresses of proxied names. The mesh layer implements it.
//
// Steer is called for every A or AAAA query of a proxied name (and for NS glue that is
// proxied), concurrently from many goroutines; it must be fast and must not block.
type Steerer interface {
	// Steer returns up to max addresses of family 4 or 6 for the proxied name being
	// answered (the query name, or the CNAME target that led to it: fully qualified, lower
	// case) for a client (the EDNS Client Subnet address when the query has one, else the
	// query's source address). failOpen reports that no node qualified and the answer is
	// every known node. Addresses of the other family, and any past max, are ignored.
	Steer(name string, client netip.Addr, family int, max int) (addrs []netip.Addr, failOpen bool)
}

const (
	// maxCNAMEChain is how many CNAMEs one answer follows inside the served zones.
	maxCNAMEChain = 8
	// advertisedUDPSize is the EDNS UDP payload size of responses (DNS flag day 2020: no
	// fragmentation on common paths).
	advertisedUDPSize = 1232
	// maxUDPResponse caps the client's advertised UDP size: larger answers go over TCP.
	maxUDPResponse = 4096
)

// outcome is what the server counts about one answer.
type outcome struct {
	noData   bool // NOERROR without answers: the name exists, the type does not
	failOpen bool // a Steerer answered with every node
}

// Answer is the pure core of the server: the response to req from client over zones z
// (nil: none), with st choosing the addresses of proxied names (nil: proxied names have
// no addresses). tcp says whether the transport is TCP: a UDP response is truncated to
// the client's EDNS UDP size (512 bytes without EDNS, 4096 at most), a TCP one to 65535
// bytes. Answer returns nil when nothing should be sent: req is nil or a response.
//
// The behaviour, by RFC:
//   - AA on answers from served zones, RA never, RD copied. Opcodes other than QUERY get
//     NOTIMP; not exactly one question, or more than one OPT, FORMERR; a class other than
//     IN or ANY, a name outside the zones, or AXFR and IXFR, REFUSED.
//   - A name that does not exist and no wildcard covers (RFC 4592) is NXDOMAIN; a name
//     that exists (an empty non-terminal included) without the type is NODATA. Both carry
//     the zone's SOA in the authority section with TTL min(SOA TTL, SOA minimum) (RFC 2308).
//   - A CNAME is followed inside the served zones, up to 8 steps; the rcode is that of the
//     last name (RFC 6604).
//   - NS answers at an apex carry A and AAAA glue for host names inside the served zones.
//   - ANY (RFC 8482): over UDP, a single synthesized HINFO "RFC8482" record when the name
//     has data; over TCP, every record of the name.
//   - EDNS (RFC 6891): the response has an OPT when the query did (UDP size 1232, DO
//     copied); a version other than 0 gets BADVERS. An EDNS Client Subnet option (RFC
//     7871) replaces the source address for steering and is echoed, with the scope prefix
//     length equal to the source prefix length when the answer was steered, 0 otherwise
//     (the answer does not depend on the client).
//
// The response does not share memory with z or req that a caller could corrupt, except
// the question section, which is req's.
func Answer(z *Zones, st Steerer, req *dns.Msg, client netip.Addr, tcp bool) *dns.Msg {
	resp, _ := answer(z, st, req, client, tcp)
	return resp
}

func answer(z *Zones, st Steerer, req *dns.Msg, client netip.Addr, tcp bool) (*dns.Msg, outcome) {
	if req == nil || req.Response {
		return nil, outcome{}
	}
	resp := &dns.Msg{
		MsgHdr: dns.MsgHdr{Id: req.Id, Response: true, Opcode: req.Opcode,
			RecursionDesired: req.RecursionDesired, CheckingDisabled: req.CheckingDisabled},
		Question: req.Question,
	}
	if len(resp.Question) > 1 {
		resp.Question = resp.Question[:1]
	}
	reqOpt, opt, echo, rcode := edns(req, &client)
	var out outcome
	switch {
	case rcode != dns.RcodeSuccess: // EDNS errors take precedence
		resp.Rcode = rcode
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
	case req.Question[0].Qclass != dns.ClassINET && req.Question[0].Qclass != dns.ClassANY,
		req.Question[0].Qtype == dns.TypeAXFR, req.Question[0].Qtype == dns.TypeIXFR:
		resp.Rcode = dns.RcodeRefused
	default:
		r := resolver{z: z, st: st, client: client, tcp: tcp, resp: resp}
		r.resolve(req.Question[0].Name, req.Question[0].Qtype)
		if reqOpt != nil && reqOpt.Do() {
			r.sign() // DNSSEC, for the zones with a key
		}
		if echo != nil && r.steered {
			echo.SourceScope = echo.SourceNetmask
		}
		out = r.out
	}
	fit(resp, reqOpt, opt, tcp)
	return resp, out
}

// edns reads the query's OPT record: it returns it (nil: none), the OPT of the response
// (nil: none), the Client Subnet option echoed in it (nil: none) and an rcode other than
// success when the query cannot be answered. An ECS address replaces *client.
func edns(req *dns.Msg, client *netip.Addr) (reqOpt, opt *dns.OPT, echo *dns.EDNS0_SUBNET, rcode int) {
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if reqOpt != nil {
				return nil, nil, nil, dns.RcodeFormatError // RFC 6891 section 6.1.1
			}
			reqOpt = o
		}
	}
	if reqOpt == nil {
		return nil, nil, nil, dns.RcodeSuccess
	}
	opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(advertisedUDPSize)
	opt.SetDo(reqOpt.Do())
	if reqOpt.Version() != 0 {
		return reqOpt, opt, nil, dns.RcodeBadVers
	}
	for _, o := range reqOpt.Option {
		ecs, ok := o.(*dns.EDNS0_SUBNET)
		if !ok {
			continue
		}
		addr, ok := subnetAddr(ecs)
		if !ok {
			return reqOpt, opt, nil, dns.RcodeFormatError // RFC 7871 section 7.1.1
		}
		echo = &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: ecs.Family, SourceNetmask: ecs.SourceNetmask}
		if ecs.SourceNetmask > 0 {
			*client = addr
			echo.Address = net.IP(addr.AsSlice())
		} else if ecs.Family != 0 {
			echo.Address = net.IP(addr.AsSlice()) // the zero address of the family
		}
		opt.Option = append(opt.Option, echo)
		break
	}
	return reqOpt, opt, echo, dns.RcodeSuccess
}

// subnetAddr returns the address of an EDNS Client Subnet option, masked to its source
// prefix length; false when the option is malformed.
func subnetAddr(e *dns.EDNS0_SUBNET) (netip.Addr, bool) {
	var bits int
	var a netip.Addr
	switch e.Family {
	case 0: // dig sends family 0 with prefix 0 for "no client subnet"
		return netip.Addr{}, e.SourceNetmask == 0
	case 1:
		ip := e.Address.To4()
		if ip == nil {
			return netip.Addr{}, false
		}
		a, bits = netip.AddrFrom4([4]byte(ip)), 32
	case 2:
		if len(e.Address) != net.IPv6len {
			return netip.Addr{}, false
		}
		a, bits = netip.AddrFrom16([16]byte(e.Address)), 128
	default:
		return netip.Addr{}, false
	}
	if int(e.SourceNetmask) > bits {
		return netip.Addr{}, false
	}
	p, err := a.Prefix(int(e.SourceNetmask))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// fit adds the OPT of the response, if any, and truncates resp to what the transport
// carries: the client's EDNS UDP size (512 bytes without EDNS, maxUDPResponse at most)
// over UDP, 65535 bytes over TCP. Truncate sets TC when it leaves records out.
func fit(resp *dns.Msg, reqOpt, opt *dns.OPT, tcp bool) {
	size := dns.MaxMsgSize
	if !tcp {
		size = dns.MinMsgSize
		if reqOpt != nil {
			size = min(max(int(reqOpt.UDPSize()), dns.MinMsgSize), maxUDPResponse)
		}
	}
	if opt != nil {
		resp.Extra = append(resp.Extra, opt)
	}
	resp.Truncate(size)
	resp.Compress = true
}

// resolver answers one question inside z.
type resolver struct {
	z       *Zones
	st      Steerer
	client  netip.Addr
	tcp     bool
	resp    *dns.Msg
	out     outcome
	steered bool    // the answer depends on the client
	deny    *denial // the negative answer's name, for its NSEC; nil: positive
}

// resolve fills the answer of a question for qname and qtype, following CNAMEs.
func (r *resolver) resolve(qname string, qtype uint16) {
	name := dns.Fqdn(qname) // owner of the answer records: as asked, case kept
	lname := strings.ToLower(name)
	var seen []string
	for step := 0; ; step++ {
		zn := r.z.find(lname)
		if zn == nil {
			if step == 0 {
				r.resp.Rcode = dns.RcodeRefused // not ours; no recursion
			}
			return // a CNAME target outside the zones is left to the resolver
		}
		if step == 0 {
			r.resp.Authoritative = true
		}
		n := zn.lookup(lname)
		if n == nil {
			r.resp.Rcode = dns.RcodeNameError
			r.negative(zn)
			r.deny = &denial{zn: zn, name: name, qtype: qtype}
			return
		}
		if cn := n.rrsets[dns.TypeCNAME]; len(cn) > 0 && qtype != dns.TypeCNAME && qtype != dns.TypeANY {
			r.resp.Answer = append(r.resp.Answer, withName(cn[0], name))
			seen = append(seen, lname)
			name = cn[0].(*dns.CNAME).Target
			lname = strings.ToLower(name)
			if step+1 >= maxCNAMEChain || containsString(seen, lname) {
				return // too long or a loop: what we have is the answer
			}
			continue
		}
		ans := r.records(zn, n, lname, name, qtype)
		if len(ans) == 0 {
			r.out.noData = true
			r.negative(zn)
			r.deny = &denial{zn: zn, n: n, name: name, qtype: qtype}
			return
		}
		r.resp.Answer = append(r.resp.Answer, ans...)
		if qtype == dns.TypeNS && lname == zn.origin {
			r.glue(ans)
		}
		return
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// records returns the records of type qtype at node n (lname, answered as name).
func (r *resolver) records(zn *zone, n *node, lname, name string, qtype uint16) []dns.RR {
	if qtype == dns.TypeANY {
		if n.empty() {
			return nil
		}
		if !r.tcp { // RFC 8482 section 4.2
			return []dns.RR{&dns.HINFO{Hdr: header(name, dns.TypeHINFO, zn.ttl), Cpu: "RFC8482"}}
		}
		var out []dns.RR
		for _, t := range n.types {
			for _, rr := range n.rrsets[t] {
				out = append(out, withName(rr, name))
			}
		}
		if n.proxied != nil {
			out = append(out, r.steer(n.proxied, lname, name, 4)...)
			out = append(out, r.steer(n.proxied, lname, name, 6)...)
		}
		return out
	}
	if n.proxied != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
		family := 4
		if qtype == dns.TypeAAAA {
			family = 6
		}
		return r.steer(n.proxied, lname, name, family)
	}
	set := n.rrsets[qtype]
	if len(set) == 0 {
		return nil
	}
	out := make([]dns.RR, len(set))
	for i, rr := range set {
		out[i] = withName(rr, name)
	}
	return out
}

// steer asks the Steerer for the addresses of a proxied name.
func (r *resolver) steer(p *proxied, lname, name string, family int) []dns.RR {
	if r.st == nil {
		return nil
	}
	r.steered = true
	addrs, failOpen := r.st.Steer(lname, r.client, family, p.answers)
	if failOpen {
		r.out.failOpen = true
	}
	var out []dns.RR
	for _, a := range addrs {
		if len(out) == p.answers {
			break
		}
		a = a.Unmap()
		switch {
		case family == 4 && a.Is4():
			out = append(out, &dns.A{Hdr: header(name, dns.TypeA, p.ttl), A: net.IP(a.AsSlice())})
		case family == 6 && a.Is6():
			out = append(out, &dns.AAAA{Hdr: header(name, dns.TypeAAAA, p.ttl), AAAA: net.IP(a.AsSlice())})
		}
	}
	return out
}

// negative puts the SOA of zn in the authority section, with the negative-caching TTL.
func (r *resolver) negative(zn *zone) {
	soa := dns.Copy(zn.soa)
	soa.Header().Ttl = min(zn.soa.Hdr.Ttl, zn.soa.Minttl)
	r.resp.Ns = append(r.resp.Ns, soa)
}

// glue adds the A and AAAA records of the nameservers in ns that lie in served zones.
func (r *resolver) glue(ns []dns.RR) {
	for _, rr := range ns {
		host := rr.(*dns.NS).Ns
		lhost := strings.ToLower(host)
		zn := r.z.find(lhost)
		if zn == nil {
			continue
		}
		n := zn.nodes[lhost] // glue is for names that exist: no wildcards, no CNAMEs
		if n == nil {
			continue
		}
		r.resp.Extra = append(r.resp.Extra, r.records(zn, n, lhost, host, dns.TypeA)...)
		r.resp.Extra = append(r.resp.Extra, r.records(zn, n, lhost, host, dns.TypeAAAA)...)
	}
}

// withName returns a copy of rr owned by name.
func withName(rr dns.RR, name string) dns.RR {
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}

// find returns the zone of a lower-case, fully qualified name: the longest apex that
// is a suffix of it, or nil.
func (z *Zones) find(lname string) *zone {
	if z == nil || len(z.byName) == 0 {
		return nil
	}
	for off, end := 0, false; !end; off, end = dns.NextLabel(lname, off) {
		if zn, ok := z.byName[lname[off:]]; ok {
			return zn
		}
	}
	return nil
}

// lookup returns the node answering for lname (lower case, inside zn): the name's own,
// or the wildcard "*.<closest encloser>" when the name does not exist (RFC 4592); nil
// when neither exists.
func (zn *zone) lookup(lname string) *node {
	if n, ok := zn.nodes[lname]; ok {
		return n
	}
	for off, end := dns.NextLabel(lname, 0); !end && len(lname)-off >= len(zn.origin); off, end = dns.NextLabel(lname, off) {
		encloser := lname[off:]
		if _, ok := zn.nodes[encloser]; ok {
			return zn.nodes["*."+encloser]
		}
	}
	return nil
}
