package dns

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Limits of Compile. A bundle past one of them is refused; it never reaches a server.
const (
	// MaxZones is the most zones one bundle may define.
	MaxZones = 1000
	// MaxRecordsPerZone is the most records plus proxied names in one zone.
	MaxRecordsPerZone = 10000
	// MaxNameservers is the most NS host names of one zone (13, as the root zone has: the
	// NS answer with its glue then stays within a 1232-byte UDP response).
	MaxNameservers = 13
)

// Defaults and bounds of the durations in a ZoneSpec.
const (
	defaultTTL        = 5 * time.Minute    // records that set no TTL
	maxTTL            = 7 * 24 * time.Hour // a week: longer TTLs make mistakes stick
	defaultProxiedTTL = 30 * time.Second   // short, so that clients follow node health
	maxProxiedTTL     = time.Hour
	defaultAnswers    = 2 // addresses per proxied answer: one to use, one to fail over to
	maxAnswers        = 8
	defaultRefresh    = time.Hour
	defaultRetry      = 10 * time.Minute
	defaultExpire     = 14 * 24 * time.Hour
	defaultMinimum    = 5 * time.Minute // negative-caching TTL (RFC 2308)
	maxRefreshRetry   = 7 * 24 * time.Hour
	maxExpire         = 90 * 24 * time.Hour
	maxMinimum        = 24 * time.Hour // RFC 2308 recommends 1 to 3 hours at most
)

// ZoneSpec is one zone as the operator configures it (the bundle's dns.zones[i]).
type ZoneSpec struct {
	// Name is the zone apex, e.g. "example.com" (trailing dot optional, case-insensitive).
	Name string
	// TTL is the TTL of records that set none, and of the SOA and NS records: 0 means 5m;
	// 1s..7d, whole seconds.
	TTL time.Duration
	// SOA sets the zone's SOA record; every field has a default.
	SOA SOASpec
	// NS are the zone's nameserver host names, 1..MaxNameservers. A single label ("ns1")
	// is relative to the zone; a name with a dot is absolute, trailing dot optional.
	NS []string
	// Records are the zone's static records.
	Records []RecordSpec
	// Proxied are the names answered with the addresses of healthy nodes.
	Proxied []ProxiedSpec
	// DNSSEC, when set, signs the zone's answers (see DNSSECSpec); nil: unsigned.
	DNSSEC *DNSSECSpec
}

// SOASpec is a zone's SOA record (RFC 1035 section 3.3.13). Zero values take defaults.
type SOASpec struct {
	// MName is the primary nameserver, as in ZoneSpec.NS; default NS[0].
	MName string
	// RName is the mailbox of the person responsible, "hostmaster.example.com" or
	// "hostmaster@example.com"; default "hostmaster.<zone>".
	RName string
	// Serial is the zone's serial; 0 means the bundle serial (Compile's serial argument),
	// so that the serial moves with every bundle.
	Serial uint32
	// Refresh, Retry and Expire only matter to secondaries: defaults 1h, 10m and 14d.
	Refresh, Retry, Expire time.Duration
	// Minimum is the negative-caching TTL (RFC 2308): how long resolvers remember that a
	// name or type does not exist. Default 5m; 1s..1d.
	Minimum time.Duration
}

// RecordSpec is one static record.
type RecordSpec struct {
	// Name is the owner: "@" for the apex, a name relative to the zone ("www",
	// "_sip._tcp"), or an absolute name inside the zone ("www.example.com.", or without the
	// trailing dot when it ends in the zone's name). "*" or "*.x" are wildcards (RFC 4592).
	// Letters, digits, '-' and '_' only; case-insensitive.
	Name string
	// Type is one of A, AAAA, CNAME, MX, TXT, CAA, SRV. NS records are refused (the zone's
	// nameservers are ZoneSpec.NS, and delegation is not supported), as is SOA.
	Type string
	// Value is the RDATA in zone-file presentation format: "192.0.2.1",
	// "10 mail.example.com.", `0 issue "letsencrypt.org"`, "10 60 5060 sip.example.com.".
	// Names without a trailing dot are relative to the zone, as in a zone file. A TXT value
	// that does not start with a quote is quoted (and split into 255-byte strings).
	Value string
	// TTL is the record's TTL, 1s..7d; 0 means the zone's TTL. Records of one name and
	// type must share one TTL (RFC 2181 section 5.2).
	TTL time.Duration
}

// ProxiedSpec is a name whose A and AAAA answers are the addresses of healthy nodes,
// chosen per query by the Steerer. A proxied name may also have static records of types
// other than A, AAAA and CNAME (an apex MX or TXT, say).
type ProxiedSpec struct {
	// Name is the owner, as in RecordSpec.Name (wildcards allowed).
	Name string
	// TTL of the answers: default 30s; 1s..1h. Short TTLs let clients follow node health.
	TTL time.Duration
	// Answers is how many addresses an answer carries: default 2; 1..8.
	Answers int
}

// Zones is a compiled, immutable set of zones, safe for concurrent use. Make one with
// Compile; the zero value and nil serve no zones.
type Zones struct {
	byName map[string]*zone // by apex, lower case, fully qualified
	names  []string         // apexes in the order of the specs
}

// Names returns the apexes of the zones (lower case, with the trailing dot), in the
// order of the specs.
func (z *Zones) Names() []string {
	if z == nil {
		return nil
	}
	return slices.Clone(z.names)
}

// zone is one compiled zone.
type zone struct {
	origin string   // apex, lower case, fully qualified
	ttl    uint32   // default TTL, seconds
	soa    *dns.SOA // at origin
	nodes  map[string]*node
	signer *signer // nil: the zone is not signed
}

// node is one name that exists in a zone. A node with no records and no proxied settings
// is an empty non-terminal: it exists only because a name below it does.
type node struct {
	rrsets  map[uint16][]dns.RR
	types   []uint16 // the keys of rrsets in the order they were configured
	proxied *proxied
}

func (n *node) empty() bool { return len(n.types) == 0 && n.proxied == nil }

// proxied is a compiled ProxiedSpec.
type proxied struct {
	ttl     uint32
	answers int
}

// recordTypes are the types a RecordSpec may have.
var recordTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "MX": dns.TypeMX,
	"TXT": dns.TypeTXT, "CAA": dns.TypeCAA, "SRV": dns.TypeSRV,
}

// Compile checks zones and compiles them for a Server; serial is the bundle serial, used
// for zones whose SOA serial is 0. Errors name field paths as an operator writes them
// under a top-level "dns:" key ("dns.zones[0].records[3].value: ..."), one per problem,
// joined with errors.Join. No zones is valid: a server with them refuses every query.
func Compile(specs []ZoneSpec, serial uint32) (*Zones, error) {
	c := &compiler{}
	if len(specs) > MaxZones {
		c.bad("dns.zones", "%d zones exceed the limit of %d", len(specs), MaxZones)
		return nil, c.err()
	}
	// Every apex first: a record must lie in its own zone and not in a child zone
	// that is also served (the child's apex would hide it).
	origins := make([]string, len(specs))
	index := map[string]int{}
	for i, zs := range specs {
		p := fmt.Sprintf("dns.zones[%d].name", i)
		origin, err := zoneName(zs.Name)
		if err != nil {
			c.bad(p, "%v", err)
			continue
		}
		if j, dup := index[origin]; dup {
			c.bad(p, "%q: zone listed twice (also dns.zones[%d])", zs.Name, j)
			continue
		}
		index[origin] = i
		origins[i] = origin
	}
	out := &Zones{byName: map[string]*zone{}}
	for i, zs := range specs {
		if origins[i] == "" {
			continue
		}
		if zn := c.zone(fmt.Sprintf("dns.zones[%d]", i), zs, origins[i], serial, index); zn != nil {
			out.byName[zn.origin] = zn
			out.names = append(out.names, zn.origin)
		}
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// compiler collects the errors of one Compile.
type compiler struct{ errs []error }

func (c *compiler) bad(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (c *compiler) err() error { return errors.Join(c.errs...) }

// seconds checks a duration field: 0 takes def; otherwise whole seconds in lo..hi.
func (c *compiler) seconds(path string, d, def, lo, hi time.Duration) uint32 {
	if d == 0 {
		d = def
	}
	if d < lo || d > hi || d%time.Second != 0 {
		c.bad(path, "%s: want whole seconds from %s to %s (0 for the default %s)",
			fmtDur(d), fmtDur(lo), fmtDur(hi), fmtDur(def))
		return uint32(def / time.Second)
	}
	return uint32(d / time.Second)
}

// zone compiles one zone; nil when it has errors (already recorded).
func (c *compiler) zone(p string, zs ZoneSpec, origin string, serial uint32, origins map[string]int) *zone {
	before := len(c.errs)
	if n := len(zs.Records) + len(zs.Proxied); n > MaxRecordsPerZone {
		c.bad(p+".records", "%d records and proxied names exceed the limit of %d per zone", n, MaxRecordsPerZone)
		return nil
	}
	ttl := c.seconds(p+".ttl", zs.TTL, defaultTTL, time.Second, maxTTL)
	zn := &zone{origin: origin, ttl: ttl, nodes: map[string]*node{}}

	// Nameservers and SOA.
	switch {
	case len(zs.NS) == 0:
		c.bad(p+".ns", "at least one nameserver host name is required")
	case len(zs.NS) > MaxNameservers:
		c.bad(p+".ns", "%d nameservers exceed the limit of %d", len(zs.NS), MaxNameservers)
	}
	var hosts []string
	for j, h := range zs.NS {
		host, err := hostName(h, origin)
		switch {
		case err != nil:
			c.bad(fmt.Sprintf("%s.ns[%d]", p, j), "%v", err)
		case slices.Contains(hosts, host):
			c.bad(fmt.Sprintf("%s.ns[%d]", p, j), "%q listed twice", h)
		default:
			hosts = append(hosts, host)
			zn.add(origin, &dns.NS{Hdr: header(origin, dns.TypeNS, ttl), Ns: host})
		}
	}
	soa := &dns.SOA{Hdr: header(origin, dns.TypeSOA, ttl), Serial: zs.SOA.Serial}
	if soa.Serial == 0 {
		soa.Serial = serial
	}
	switch {
	case zs.SOA.MName != "":
		mname, err := hostName(zs.SOA.MName, origin)
		if err != nil {
			c.bad(p+".soa.mname", "%v", err)
		}
		soa.Ns = mname
	case len(hosts) > 0:
		soa.Ns = hosts[0]
	}
	soa.Mbox = "hostmaster." + origin
	if zs.SOA.RName != "" {
		mbox, err := mailbox(zs.SOA.RName, origin)
		if err != nil {
			c.bad(p+".soa.rname", "%v", err)
		}
		soa.Mbox = mbox
	}
	soa.Refresh = c.seconds(p+".soa.refresh", zs.SOA.Refresh, defaultRefresh, time.Second, maxRefreshRetry)
	soa.Retry = c.seconds(p+".soa.retry", zs.SOA.Retry, defaultRetry, time.Second, maxRefreshRetry)
	soa.Expire = c.seconds(p+".soa.expire", zs.SOA.Expire, defaultExpire, time.Second, maxExpire)
	soa.Minttl = c.seconds(p+".soa.minimum", zs.SOA.Minimum, defaultMinimum, time.Second, maxMinimum)
	zn.soa = soa
	zn.add(origin, soa)
	if zs.DNSSEC != nil {
		if zn.signer = c.dnssec(p+".dnssec", zs.DNSSEC, origin, ttl); zn.signer != nil {
			zn.add(origin, zn.signer.key)
		}
	}

	// Proxied names, before the records so that records can be checked against them.
	proxiedAt := map[string]int{}
	for k, ps := range zs.Proxied {
		pp := fmt.Sprintf("%s.proxied[%d]", p, k)
		name, err := ownerName(ps.Name, origin, origins)
		if err != nil {
			c.bad(pp+".name", "%v", err)
			continue
		}
		if j, dup := proxiedAt[name]; dup {
			c.bad(pp+".name", "%q listed twice (also proxied[%d])", ps.Name, j)
			continue
		}
		proxiedAt[name] = k
		pr := &proxied{answers: ps.Answers}
		pr.ttl = c.seconds(pp+".ttl", ps.TTL, defaultProxiedTTL, time.Second, maxProxiedTTL)
		if pr.answers == 0 {
			pr.answers = defaultAnswers
		}
		if pr.answers < 1 || pr.answers > maxAnswers {
			c.bad(pp+".answers", "%d: want 1..%d (0 for the default %d)", ps.Answers, maxAnswers, defaultAnswers)
		}
		zn.node(name).proxied = pr
	}

	// Static records.
	type key struct {
		name string
		typ  uint16
	}
	first := map[key]int{}      // first record of each RRset
	cnameAt := map[string]int{} // the CNAME record of a name
	otherAt := map[string]int{} // a non-CNAME record of a name
	var cnames []string         // names with a CNAME, in the order of the records
	for j, rs := range zs.Records {
		rp := fmt.Sprintf("%s.records[%d]", p, j)
		name, err := ownerName(rs.Name, origin, origins)
		if err != nil {
			c.bad(rp+".name", "%v", err)
		}
		typ, err := recordType(rs.Type)
		if err != nil {
			c.bad(rp+".type", "%v", err)
		}
		rttl := c.seconds(rp+".ttl", rs.TTL, time.Duration(ttl)*time.Second, time.Second, maxTTL)
		if name == "" || typ == 0 {
			continue // the value cannot be checked without a name and a type
		}
		rr, err := parseRR(name, rttl, typ, rs.Value, origin)
		if err != nil {
			c.bad(rp+".value", "%v", err)
			continue
		}
		if k, isProxied := proxiedAt[name]; isProxied && (typ == dns.TypeA || typ == dns.TypeAAAA || typ == dns.TypeCNAME) {
			c.bad(rp+".type", "%s at %q, a proxied name (proxied[%d]): its addresses come from the healthy nodes",
				rs.Type, rs.Name, k)
			continue
		}
		if typ == dns.TypeCNAME {
			if name == origin {
				c.bad(rp+".type", "CNAME at the zone apex: the apex has SOA and NS records, and a CNAME must be alone")
				continue
			}
			if k, dup := cnameAt[name]; dup {
				c.bad(rp+".type", "second CNAME at %q (also records[%d]): a name has at most one", rs.Name, k)
				continue
			}
			cnameAt[name] = j
			cnames = append(cnames, name)
		} else if _, seen := otherAt[name]; !seen {
			otherAt[name] = j
		}
		k := key{name, typ}
		if f, seen := first[k]; seen {
			set := zn.nodes[name].rrsets[typ]
			if set[0].Header().Ttl != rttl {
				c.bad(rp+".ttl", "%s differs from the %s of records[%d]: records of one name and type share one TTL",
					fmtDur(time.Duration(rttl)*time.Second), fmtDur(time.Duration(set[0].Header().Ttl)*time.Second), f)
				continue
			}
			if slices.ContainsFunc(set, func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) {
				c.bad(rp+".value", "%q: the same %s record as an earlier one at this name", short(rs.Value), dns.TypeToString[typ])
				continue
			}
		} else {
			first[k] = j
		}
		zn.add(name, rr)
	}
	for _, name := range cnames {
		if k, other := otherAt[name]; other {
			j := cnameAt[name]
			c.bad(fmt.Sprintf("%s.records[%d].type", p, j),
				"CNAME at %q, which also has records[%d]: a CNAME must be alone at its name", zs.Records[j].Name, k)
		}
	}
	if len(c.errs) > before {
		return nil
	}
	// Empty non-terminals: every ancestor of a name, up to the apex, exists.
	for name := range zn.nodes {
		for off, end := dns.NextLabel(name, 0); !end && len(name)-off > len(origin); off, end = dns.NextLabel(name, off) {
			zn.node(name[off:])
		}
	}
	return zn
}

// node returns the node of name, creating it.
func (zn *zone) node(name string) *node {
	n := zn.nodes[name]
	if n == nil {
		n = &node{}
		zn.nodes[name] = n
	}
	return n
}

// add adds rr to the node of name.
func (zn *zone) add(name string, rr dns.RR) {
	n := zn.node(name)
	if n.rrsets == nil {
		n.rrsets = map[uint16][]dns.RR{}
	}
	t := rr.Header().Rrtype
	if _, ok := n.rrsets[t]; !ok {
		n.types = append(n.types, t)
	}
	n.rrsets[t] = append(n.rrsets[t], rr)
}

func header(name string, typ uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
}

func recordType(s string) (uint16, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if t, ok := recordTypes[u]; ok {
		return t, nil
	}
	switch u {
	case "":
		return 0, errors.New("required: one of A, AAAA, CNAME, MX, TXT, CAA, SRV")
	case "NS":
		return 0, errors.New("NS records are not supported: the zone's nameservers are its ns list, and delegating a subdomain is not supported")
	case "SOA":
		return 0, errors.New("SOA records are not supported: the zone's SOA comes from its soa settings")
	}
	return 0, fmt.Errorf("%q: unsupported type; want one of A, AAAA, CNAME, MX, TXT, CAA, SRV", short(s))
}

// zoneName checks and canonicalizes a zone apex.
func zoneName(s string) (string, error) {
	if s == "" {
		return "", errors.New("required: the zone apex, e.g. example.com")
	}
	name := strings.ToLower(dns.Fqdn(s))
	if name == "." {
		return "", errors.New(`".": the root zone cannot be served`)
	}
	if err := checkName(name, false); err != nil {
		return "", fmt.Errorf("%q: %v", short(s), err)
	}
	return name, nil
}

// ownerName resolves a record's owner name inside the zone origin. It refuses names
// outside the zone and names that belong to another served zone below this one.
func ownerName(s, origin string, origins map[string]int) (string, error) {
	var name string
	bare := strings.TrimSuffix(origin, ".")
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return "", errors.New(`required ("@" for the zone apex)`)
	case s == "@":
		return origin, nil
	case strings.HasSuffix(s, "."):
		name = lower
		if name != origin && !strings.HasSuffix(name, "."+origin) {
			return "", fmt.Errorf("%q is outside the zone %s", short(s), origin)
		}
	case lower == bare || strings.HasSuffix(lower, "."+bare):
		name = lower + "." // "www.example.com" in example.com is meant absolute
	default:
		name = lower + "." + origin
	}
	if err := checkName(name, true); err != nil {
		return "", fmt.Errorf("%q: %v", short(s), err)
	}
	// The longest served apex containing name must be this zone's.
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		suffix := name[off:]
		if suffix == origin {
			break
		}
		if i, ok := origins[suffix]; ok {
			return "", fmt.Errorf("%q belongs to the zone %s (dns.zones[%d]), which is also served", short(s), suffix, i)
		}
	}
	return name, nil
}

// hostName resolves a nameserver host name: a single label is relative to origin, any
// other name is absolute (the trailing dot optional).
func hostName(s, origin string) (string, error) {
	if s == "" {
		return "", errors.New("required: a host name")
	}
	name := strings.ToLower(s)
	if strings.Contains(strings.TrimSuffix(name, "."), ".") {
		name = dns.Fqdn(name)
	} else if !strings.HasSuffix(name, ".") {
		name += "." + origin
	}
	if err := checkName(name, false); err != nil {
		return "", fmt.Errorf("%q: %v", short(s), err)
	}
	return name, nil
}

// mailbox converts an SOA RNAME, "hostmaster.example.com" or "hostmaster@example.com",
// to its domain-name form.
func mailbox(s, origin string) (string, error) {
	local, domain, isMail := strings.Cut(s, "@")
	if !isMail {
		return hostName(s, origin)
	}
	if local == "" || strings.Trim(local, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+") != "" {
		return "", fmt.Errorf("%q: want a mailbox such as hostmaster@example.com", short(s))
	}
	host, err := hostName(domain, origin)
	if err != nil {
		return "", fmt.Errorf("%q: %v", short(s), err)
	}
	return strings.ReplaceAll(local, ".", `\.`) + "." + host, nil
}

// checkName checks a lower-case, fully qualified name: letters, digits, '-' and '_',
// labels of 1..63 bytes, 253 bytes in all; with wildcard, "*" may be the first label.
func checkName(name string, wildcard bool) error {
	if len(name) > 254 {
		return errors.New("name longer than 253 bytes")
	}
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	for i, l := range labels {
		switch {
		case l == "":
			return errors.New("empty label")
		case len(l) > 63:
			return fmt.Errorf("label %q longer than 63 bytes", short(l))
		case l == "*" && i == 0 && wildcard:
			continue
		case l == "*" && wildcard:
			return errors.New(`"*" may only be the first label (a wildcard)`)
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return fmt.Errorf("label %q: want letters, digits, '-' and '_'", short(l))
		}
	}
	return nil
}

var parseErrSuffix = regexp.MustCompile(` at line: \d+:\d+$`)

// parseRR parses a record's value with the zone-file parser, over the synthesized line
// "<name> <ttl> IN <type> <value>", with origin as the origin of relative names.
func parseRR(name string, ttl uint32, typ uint16, value, origin string) (dns.RR, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return nil, errors.New("required: the record's data, e.g. 192.0.2.1 for an A record")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		return nil, fmt.Errorf("%q: control characters (a line break?) are not allowed", short(v))
	}
	if typ == dns.TypeTXT && !strings.HasPrefix(v, `"`) {
		v = quoteTXT(v)
	}
	line := fmt.Sprintf("%s %d IN %s %s", name, ttl, dns.TypeToString[typ], v)
	zp := dns.NewZoneParser(strings.NewReader(line), origin, "")
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		msg := strings.TrimPrefix(err.Error(), "dns: ")
		return nil, fmt.Errorf("%q: not a valid %s value: %s", short(value), dns.TypeToString[typ], parseErrSuffix.ReplaceAllString(msg, ""))
	}
	if !ok || rr == nil || rr.Header().Rrtype != typ {
		return nil, fmt.Errorf("%q: not a %s record's data", short(value), dns.TypeToString[typ])
	}
	// A doubled zone name is the classic slip of a relative name meant absolute.
	doubled := strings.TrimSuffix(origin, ".") + "." + origin
	target := ""
	switch rr := rr.(type) {
	case *dns.A:
		if rr.A.To4() == nil {
			return nil, fmt.Errorf("%q: want an IPv4 address", short(value))
		}
	case *dns.AAAA:
		if rr.AAAA.To4() != nil {
			return nil, fmt.Errorf("%q: want an IPv6 address (an IPv4 one belongs in an A record)", short(value))
		}
	case *dns.CNAME:
		target = rr.Target
	case *dns.MX:
		target = rr.Mx
	case *dns.SRV:
		target = rr.Target
	}
	if t := strings.ToLower(target); t == doubled || strings.HasSuffix(t, "."+doubled) {
		return nil, fmt.Errorf("%q names %s: end an absolute name with a dot", short(value), target)
	}
	return rr, nil
}

// quoteTXT turns free text into TXT presentation format: quoted character-strings of at
// most 255 bytes, with '"' and '\' escaped.
func quoteTXT(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		n := min(len(s), 255)
		chunk := s[:n]
		s = s[n:]
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for i := 0; i < len(chunk); i++ {
			if chunk[i] == '"' || chunk[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(chunk[i])
		}
		b.WriteByte('"')
	}
	return b.String()
}

// short cuts s for an error message.
func short(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// fmtDur formats a whole-second duration compactly: "7d", "1h", "1h30m", "30s".
func fmtDur(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.d {
			fmt.Fprintf(&b, "%d%s", d/u.d, u.s)
			d %= u.d
		}
	}
	return b.String()
}
