package bundle

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"rhizome/internal/dns"
)

// DNS is the bundle's DNS section: the zones every node serves as an authoritative
// nameserver, where clients reach each node (for "proxied" names, answered with healthy
// nodes), and which client prefixes belong to which region. See docs/dns.md.
type DNS struct {
	Nodes   []DNSNode   `yaml:"nodes" json:"nodes,omitempty"`
	Regions []DNSRegion `yaml:"regions" json:"regions,omitempty"`
	Zones   []Zone      `yaml:"zones" json:"zones,omitempty"`
}

// DNSNode is where clients reach one node: its public addresses, by the node's name in
// the mesh (its bootstrap name).
type DNSNode struct {
	Name      string   `yaml:"name" json:"name,omitempty"`
	Addresses []string `yaml:"addresses" json:"addresses,omitempty"` // IPv4 and IPv6
	Weight    int      `yaml:"weight" json:"weight,omitempty"`       // share of answers, 1..100; default 1
}

// DNSRegion maps client prefixes to a region name (the nodes' bootstrap region), so that
// clients are answered with nodes of their region first.
type DNSRegion struct {
	Name     string   `yaml:"name" json:"name,omitempty"`
	Prefixes []string `yaml:"prefixes" json:"prefixes,omitempty"`
}

// Zone is one zone: dns.ZoneSpec.
type Zone struct {
	Name    string       `yaml:"name" json:"name,omitempty"`
	TTL     Duration     `yaml:"ttl" json:"ttl,omitempty"`
	SOA     SOA          `yaml:"soa" json:"soa"`
	NS      []string     `yaml:"ns" json:"ns,omitempty"`
	Records []Record     `yaml:"records" json:"records,omitempty"`
	Proxied []ProxiedDNS `yaml:"proxied" json:"proxied,omitempty"`
	DNSSEC  *ZoneDNSSEC  `yaml:"dnssec" json:"dnssec,omitempty"`
}

// ZoneDNSSEC signs a zone's answers online: dns.DNSSECSpec.
type ZoneDNSSEC struct {
	// Key is the zone's signing key in BIND's private-key format (rhizome keygen --dnssec
	// ZONE writes one), ECDSAP256SHA256 or ED25519. The bundle is signed, not encrypted:
	// every node holds the key, as every node signs answers.
	Key string `yaml:"key" json:"key,omitempty"`
}

// SOA is a zone's SOA settings: dns.SOASpec.
type SOA struct {
	MName   string   `yaml:"mname" json:"mname,omitempty"`
	RName   string   `yaml:"rname" json:"rname,omitempty"`
	Serial  uint32   `yaml:"serial" json:"serial,omitempty"`
	Refresh Duration `yaml:"refresh" json:"refresh,omitempty"`
	Retry   Duration `yaml:"retry" json:"retry,omitempty"`
	Expire  Duration `yaml:"expire" json:"expire,omitempty"`
	Minimum Duration `yaml:"minimum" json:"minimum,omitempty"`
}

// Record is one static record: dns.RecordSpec.
type Record struct {
	Name  string   `yaml:"name" json:"name,omitempty"`
	Type  string   `yaml:"type" json:"type,omitempty"`
	Value string   `yaml:"value" json:"value,omitempty"`
	TTL   Duration `yaml:"ttl" json:"ttl,omitempty"`
}

// ProxiedDNS is a name answered with healthy nodes: dns.ProxiedSpec.
type ProxiedDNS struct {
	Name    string   `yaml:"name" json:"name,omitempty"`
	TTL     Duration `yaml:"ttl" json:"ttl,omitempty"`
	Answers int      `yaml:"answers" json:"answers,omitempty"`
}

// Limits of the DNS section.
const (
	MaxDNSNodes          = 10000
	MaxDNSNodeAddresses  = 8
	MaxDNSRegions        = 1000
	MaxDNSRegionPrefixes = 10000
)

// ZoneSpecs converts the zones for the dns package.
func (d *DNS) ZoneSpecs() []dns.ZoneSpec {
	if d == nil {
		return nil
	}
	var out []dns.ZoneSpec
	for _, z := range d.Zones {
		zs := dns.ZoneSpec{Name: z.Name, TTL: time.Duration(z.TTL), NS: clone(z.NS),
			SOA: dns.SOASpec{MName: z.SOA.MName, RName: z.SOA.RName, Serial: z.SOA.Serial,
				Refresh: time.Duration(z.SOA.Refresh), Retry: time.Duration(z.SOA.Retry),
				Expire: time.Duration(z.SOA.Expire), Minimum: time.Duration(z.SOA.Minimum)}}
		for _, r := range z.Records {
			zs.Records = append(zs.Records, dns.RecordSpec{Name: r.Name, Type: r.Type, Value: r.Value, TTL: time.Duration(r.TTL)})
		}
		for _, p := range z.Proxied {
			zs.Proxied = append(zs.Proxied, dns.ProxiedSpec{Name: p.Name, TTL: time.Duration(p.TTL), Answers: p.Answers})
		}
		if z.DNSSEC != nil {
			zs.DNSSEC = &dns.DNSSECSpec{Key: z.DNSSEC.Key}
		}
		out = append(out, zs)
	}
	return out
}

// validate checks the DNS section; errors name field paths under dns.
func (d *DNS) validate(serial uint64) error {
	if d == nil {
		return nil
	}
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("dns.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if len(d.Nodes) > MaxDNSNodes {
		bad("nodes", "%d nodes exceed the limit of %d", len(d.Nodes), MaxDNSNodes)
	}
	seen := map[string]bool{}
	for i, n := range d.Nodes {
		p := fmt.Sprintf("nodes[%d]", i)
		if n.Name == "" || len(n.Name) > 63 || strings.Trim(n.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			bad(p+".name", "%q: a node's bootstrap name (letters, digits, '-')", short(n.Name))
		} else if seen[n.Name] {
			bad(p+".name", "%q listed twice", n.Name)
		}
		seen[n.Name] = true
		if len(n.Addresses) == 0 || len(n.Addresses) > MaxDNSNodeAddresses {
			bad(p+".addresses", "want 1..%d addresses", MaxDNSNodeAddresses)
		}
		for j, a := range n.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				bad(fmt.Sprintf("%s.addresses[%d]", p, j), "%q: want an IPv4 or IPv6 address", short(a))
			} else if ip.IsUnspecified() || ip.IsMulticast() {
				bad(fmt.Sprintf("%s.addresses[%d]", p, j), "%q: not an address clients can reach", a)
			}
		}
		if n.Weight < 0 || n.Weight > 100 {
			bad(p+".weight", "%d: want 1..100 (0 for the default 1)", n.Weight)
		}
	}
	if len(d.Regions) > MaxDNSRegions {
		bad("regions", "%d regions exceed the limit of %d", len(d.Regions), MaxDNSRegions)
	}
	prefixes := 0
	for i, r := range d.Regions {
		p := fmt.Sprintf("regions[%d]", i)
		if r.Name == "" {
			bad(p+".name", "required (a region name the nodes' bootstrap files use)")
		}
		prefixes += len(r.Prefixes)
		for j, s := range r.Prefixes {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err2 := netip.ParseAddr(s); err2 != nil {
					bad(fmt.Sprintf("%s.prefixes[%d]", p, j), "%q: want a CIDR prefix such as 192.0.2.0/24", short(s))
				}
			}
		}
	}
	if prefixes > MaxDNSRegionPrefixes {
		bad("regions", "%d prefixes in all exceed the limit of %d", prefixes, MaxDNSRegionPrefixes)
	}
	if len(d.Zones) > 0 && len(d.Nodes) == 0 {
		for _, z := range d.Zones {
			if len(z.Proxied) > 0 {
				bad("nodes", "proxied names need the nodes' addresses: list them here")
				break
			}
		}
	}
	if _, err := dns.Compile(d.ZoneSpecs(), uint32(serial)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
