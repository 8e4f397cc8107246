package dns

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// zoneWith returns one valid zone changed by edit.
func zoneWith(edit func(z *ZoneSpec)) []ZoneSpec {
	z := ZoneSpec{Name: "example.com", NS: []string{"ns1"},
		Records: []RecordSpec{{Name: "ns1", Type: "A", Value: "192.0.2.53"}}}
	edit(&z)
	return []ZoneSpec{z}
}

func rec(name, typ, value string) RecordSpec { return RecordSpec{Name: name, Type: typ, Value: value} }

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name  string
		specs []ZoneSpec
		want  []string // each must be in the error, in this order
	}{
		{"duplicate zone", []ZoneSpec{{Name: "example.com", NS: []string{"ns1"}}, {Name: "EXAMPLE.com.", NS: []string{"ns1"}}},
			[]string{`dns.zones[1].name: "EXAMPLE.com.": zone listed twice (also dns.zones[0])`}},
		{"empty zone name", []ZoneSpec{{NS: []string{"ns1"}}}, []string{"dns.zones[0].name: required"}},
		{"bad zone name", []ZoneSpec{{Name: "exa mple.com", NS: []string{"ns1"}}}, []string{`dns.zones[0].name: "exa mple.com": label "exa mple"`}},
		{"root zone", []ZoneSpec{{Name: ".", NS: []string{"ns1"}}}, []string{"dns.zones[0].name:", "root zone"}},
		{"no NS", zoneWith(func(z *ZoneSpec) { z.NS = nil }), []string{"dns.zones[0].ns: at least one"}},
		{"too many NS", zoneWith(func(z *ZoneSpec) { z.NS = strings.Split("a b c d e f g h i j k l m n", " ") }),
			[]string{"dns.zones[0].ns: 14 nameservers exceed the limit of 13"}},
		{"duplicate NS", zoneWith(func(z *ZoneSpec) { z.NS = []string{"ns1", "NS1.example.com."} }),
			[]string{`dns.zones[0].ns[1]: "NS1.example.com." listed twice`}},
		{"bad NS", zoneWith(func(z *ZoneSpec) { z.NS = []string{"ns1", "*.example.com"} }), []string{`dns.zones[0].ns[1]: "*.example.com"`}},
		{"zone TTL", zoneWith(func(z *ZoneSpec) { z.TTL = 8 * 24 * time.Hour }), []string{"dns.zones[0].ttl: 8d: want whole seconds from 1s to 7d"}},
		{"fractional TTL", zoneWith(func(z *ZoneSpec) { z.TTL = 1500 * time.Millisecond }), []string{"dns.zones[0].ttl: 1.5s"}},
		{"SOA minimum", zoneWith(func(z *ZoneSpec) { z.SOA.Minimum = -time.Second }), []string{"dns.zones[0].soa.minimum: -1s"}},
		{"SOA rname", zoneWith(func(z *ZoneSpec) { z.SOA.RName = "bad mail@example.com" }), []string{"dns.zones[0].soa.rname:"}},
		{"SOA mname", zoneWith(func(z *ZoneSpec) { z.SOA.MName = "ns..example.com" }), []string{"dns.zones[0].soa.mname: ", "empty label"}},
		{"record outside the zone", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www.example.net.", "A", "192.0.2.1")) }),
			[]string{`dns.zones[0].records[1].name: "www.example.net." is outside the zone example.com.`}},
		{"record in a served child zone", append(zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www.sub", "A", "192.0.2.1")) }),
			ZoneSpec{Name: "sub.example.com", NS: []string{"ns1.example.com"}}),
			[]string{`dns.zones[0].records[1].name: "www.sub" belongs to the zone sub.example.com. (dns.zones[1])`}},
		{"CNAME at the apex", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("@", "CNAME", "www.example.net.")) }),
			[]string{"dns.zones[0].records[1].type: CNAME at the zone apex"}},
		{"CNAME and other data", zoneWith(func(z *ZoneSpec) {
			z.Records = append(z.Records, rec("www", "TXT", "x"), rec("www", "CNAME", "example.net."))
		}), []string{`dns.zones[0].records[2].type: CNAME at "www", which also has records[1]`}},
		{"two CNAMEs", zoneWith(func(z *ZoneSpec) {
			z.Records = append(z.Records, rec("www", "CNAME", "a.example.net."), rec("www", "CNAME", "b.example.net."))
		}), []string{`dns.zones[0].records[2].type: second CNAME at "www" (also records[1])`}},
		{"proxied name with an A record", zoneWith(func(z *ZoneSpec) {
			z.Records = append(z.Records, rec("cdn", "A", "192.0.2.1"))
			z.Proxied = []ProxiedSpec{{Name: "cdn"}}
		}), []string{`dns.zones[0].records[1].type: A at "cdn", a proxied name (proxied[0])`}},
		{"proxied name with a CNAME", zoneWith(func(z *ZoneSpec) {
			z.Records = append(z.Records, rec("cdn.example.com.", "CNAME", "example.net."))
			z.Proxied = []ProxiedSpec{{Name: "cdn"}}
		}), []string{`dns.zones[0].records[1].type: CNAME at "cdn.example.com.", a proxied name (proxied[0])`}},
		{"proxied twice", zoneWith(func(z *ZoneSpec) { z.Proxied = []ProxiedSpec{{Name: "cdn"}, {Name: "CDN"}} }),
			[]string{`dns.zones[0].proxied[1].name: "CDN" listed twice (also proxied[0])`}},
		{"proxied TTL and answers", zoneWith(func(z *ZoneSpec) { z.Proxied = []ProxiedSpec{{Name: "cdn", TTL: 2 * time.Hour, Answers: 9}} }),
			[]string{"dns.zones[0].proxied[0].ttl: 2h: want whole seconds from 1s to 1h", "dns.zones[0].proxied[0].answers: 9: want 1..8"}},
		{"proxied outside", zoneWith(func(z *ZoneSpec) { z.Proxied = []ProxiedSpec{{Name: "cdn.example.org."}} }),
			[]string{"dns.zones[0].proxied[0].name:", "outside the zone"}},
		{"unknown type", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "PTR", "x.example.com.")) }),
			[]string{`dns.zones[0].records[1].type: "PTR": unsupported type`}},
		{"NS record", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("sub", "NS", "ns.example.net.")) }),
			[]string{"dns.zones[0].records[1].type: NS records are not supported"}},
		{"SOA record", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("@", "SOA", "a b 1 2 3 4 5")) }),
			[]string{"dns.zones[0].records[1].type: SOA records are not supported"}},
		{"no type", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "", "192.0.2.1")) }),
			[]string{"dns.zones[0].records[1].type: required"}},
		{"bad A", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "A", "192.0.2.999")) }),
			[]string{`dns.zones[0].records[1].value: "192.0.2.999": not a valid A value: bad A A`}},
		{"IPv6 in A", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "A", "2001:db8::1")) }),
			[]string{`dns.zones[0].records[1].value: "2001:db8::1"`}},
		{"IPv4 in AAAA", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "AAAA", "192.0.2.1")) }),
			[]string{`dns.zones[0].records[1].value: "192.0.2.1"`}},
		{"bad MX", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("@", "MX", "mail.example.com.")) }),
			[]string{`dns.zones[0].records[1].value: "mail.example.com.": not a valid MX value: bad MX`}},
		{"bad SRV", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("_sip._tcp", "SRV", "10 60 sip.example.com.")) }),
			[]string{`dns.zones[0].records[1].value: "10 60 sip.example.com."`}},
		{"bad CAA", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("@", "CAA", "issue letsencrypt.org")) }),
			[]string{`dns.zones[0].records[1].value: "issue letsencrypt.org": not a valid CAA value: bad CAA`}},
		{"empty value", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "A", " ")) }),
			[]string{"dns.zones[0].records[1].value: required"}},
		{"two lines", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "A", "192.0.2.1\nevil 1 IN A 192.0.2.2")) }),
			[]string{"dns.zones[0].records[1].value:", "control characters"}},
		{"doubled zone name", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("www", "CNAME", "web.example.com")) }),
			[]string{`dns.zones[0].records[1].value: "web.example.com" names web.example.com.example.com.: end an absolute name with a dot`}},
		{"bad owner", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("a.*", "A", "192.0.2.1")) }),
			[]string{`dns.zones[0].records[1].name: "a.*": "*" may only be the first label`}},
		{"no owner", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("", "A", "192.0.2.1")) }),
			[]string{`dns.zones[0].records[1].name: required ("@" for the zone apex)`}},
		{"long label", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec(strings.Repeat("a", 64), "A", "192.0.2.1")) }),
			[]string{"dns.zones[0].records[1].name:", "longer than 63 bytes"}},
		{"record TTL", zoneWith(func(z *ZoneSpec) { z.Records[0].TTL = -time.Second }), []string{"dns.zones[0].records[0].ttl: -1s"}},
		{"RRset TTLs differ", zoneWith(func(z *ZoneSpec) {
			z.Records = append(z.Records, RecordSpec{Name: "ns1", Type: "A", Value: "192.0.2.54", TTL: time.Minute})
		}), []string{"dns.zones[0].records[1].ttl: 1m differs from the 5m of records[0]"}},
		{"duplicate record", zoneWith(func(z *ZoneSpec) { z.Records = append(z.Records, rec("NS1", "a", "192.0.2.53")) }),
			[]string{`dns.zones[0].records[1].value: "192.0.2.53": the same A record as an earlier one`}},
		{"errors of several zones", []ZoneSpec{{Name: "a.example", NS: []string{"ns1"}, Records: []RecordSpec{rec("x", "A", "nope")}},
			{Name: "b.example"}},
			[]string{`dns.zones[0].records[0].value: "nope"`, "dns.zones[1].ns: at least one"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			z, err := Compile(tc.specs, 1)
			if err == nil {
				t.Fatalf("compiled; want an error with %q", tc.want)
			}
			if z != nil {
				t.Error("zones returned with an error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q\nwant it to contain %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "dns.zones") {
					t.Errorf("error line without a path: %q", line)
				}
			}
		})
	}
}

func TestCompileLimits(t *testing.T) {
	zones := make([]ZoneSpec, MaxZones+1)
	if _, err := Compile(zones, 1); err == nil || !strings.Contains(err.Error(), "dns.zones: 1001 zones exceed the limit of 1000") {
		t.Errorf("too many zones: %v", err)
	}
	recs := make([]RecordSpec, MaxRecordsPerZone+1)
	_, err := Compile(zoneWith(func(z *ZoneSpec) { z.Records = recs }), 1)
	if err == nil || !strings.Contains(err.Error(), "dns.zones[0].records: 10001 records and proxied names exceed the limit of 10000") {
		t.Errorf("too many records: %v", err)
	}
}

func TestCompileAccepts(t *testing.T) {
	if z, err := Compile(nil, 1); err != nil || len(z.Names()) != 0 {
		t.Errorf("no zones: %v, %v", z, err)
	}
	z, err := Compile(testSpecs(), 9)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(z.Names(), " "); got != "example.com. sub.example.com." {
		t.Errorf("names %q", got)
	}
	zn := z.byName["example.com."]
	if zn.soa.Serial != 9 || zn.soa.Ns != "ns1.example.com." || zn.soa.Mbox != "hostmaster.example.com." ||
		zn.soa.Refresh != 3600 || zn.soa.Retry != 600 || zn.soa.Expire != 14*86400 || zn.soa.Minttl != 60 {
		t.Errorf("SOA defaults: %v", zn.soa)
	}
	if sub := z.byName["sub.example.com."]; sub.soa.Serial != 42 || sub.soa.Mbox != "dns.example.com." || sub.ttl != 300 {
		t.Errorf("sub SOA: %v", sub.soa)
	}
	for _, ent := range []string{"deep.example.com.", "b.deep.example.com.", "wild.example.com.", "edge.example.com.", "_tcp.example.com."} {
		if n := zn.nodes[ent]; n == nil || !n.empty() {
			t.Errorf("%s: want an empty non-terminal, got %v", ent, n)
		}
	}
	// Long TXT values are split into 255-byte strings; quotes and backslashes escaped.
	long := strings.Repeat("k", 300) + `"\`
	z, err = Compile(zoneWith(func(zs *ZoneSpec) { zs.Records = append(zs.Records, rec("txt", "txt", long)) }), 1)
	if err != nil {
		t.Fatal(err)
	}
	txt := z.byName["example.com."].nodes["txt.example.com."].rrsets[16][0]
	if got := txt.String(); !strings.Contains(got, `"`+strings.Repeat("k", 255)+`" "`+strings.Repeat("k", 45)+`\"\\"`) {
		t.Errorf("TXT split: %s", got)
	}
	// An email-form RNAME with a dot in the local part, and a relative "www.example.com".
	z, err = Compile(zoneWith(func(zs *ZoneSpec) {
		zs.SOA.RName = "host.master@example.com"
		zs.Records = append(zs.Records, rec("www.example.com", "A", "192.0.2.1"))
	}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if zn := z.byName["example.com."]; zn.soa.Mbox != `host\.master.example.com.` || zn.nodes["www.example.com."] == nil {
		t.Errorf("mbox %q, www %v", zn.soa.Mbox, zn.nodes["www.example.com."])
	}
}

func TestCompileErrorsJoin(t *testing.T) {
	_, err := Compile([]ZoneSpec{{Name: "a.example"}, {Name: "b.example"}}, 1)
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Errorf("want two joined errors, got %v", err)
	}
}
