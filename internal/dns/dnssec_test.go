package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testKeys are generated once per algorithm: private text, DNSKEY and DS.
var testKeys = struct {
	sync.Mutex
	m map[string][3]string
}{m: map[string][3]string{}}

func testKey(t testing.TB, alg string) (priv, dnskey, ds string) {
	t.Helper()
	testKeys.Lock()
	defer testKeys.Unlock()
	if k, ok := testKeys.m[alg]; ok {
		return k[0], k[1], k[2]
	}
	priv, dnskey, ds, err := GenerateDNSSECKey("example.com", alg)
	if err != nil {
		t.Fatalf("GenerateDNSSECKey(%s): %v", alg, err)
	}
	testKeys.m[alg] = [3]string{priv, dnskey, ds}
	return priv, dnskey, ds
}

// signedZones compiles testSpecs with example.com signed by a key of alg
// (sub.example.com stays unsigned).
func signedZones(t testing.TB, alg string) *Zones {
	t.Helper()
	priv, _, _ := testKey(t, alg)
	specs := testSpecs()
	specs[0].DNSSEC = &DNSSECSpec{Key: priv}
	z, err := Compile(specs, testSerial)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return z
}

// withDO adds an OPT record with the DO bit.
func withDO(m *dns.Msg, size uint16) *dns.Msg {
	m.SetEdns0(size, true)
	return m
}

// verifySection checks that every RRset of rrs is followed by a valid RRSIG of key, and
// returns the RRSIGs by covered type.
func verifySection(t *testing.T, key *dns.DNSKEY, rrs []dns.RR) map[uint16]*dns.RRSIG {
	t.Helper()
	sets := map[uint16][]dns.RR{}
	sigs := map[uint16]*dns.RRSIG{}
	for _, rr := range rrs {
		if s, ok := rr.(*dns.RRSIG); ok {
			if sigs[s.TypeCovered] != nil {
				t.Errorf("two RRSIGs for %s", dns.TypeToString[s.TypeCovered])
			}
			sigs[s.TypeCovered] = s
			continue
		}
		sets[rr.Header().Rrtype] = append(sets[rr.Header().Rrtype], rr)
	}
	for typ, set := range sets {
		sig := sigs[typ]
		if sig == nil {
			t.Errorf("no RRSIG for %s at %s", dns.TypeToString[typ], set[0].Header().Name)
			continue
		}
		if err := sig.Verify(key, set); err != nil {
			t.Errorf("RRSIG of %s at %s does not verify: %v\n%v\n%v", dns.TypeToString[typ], set[0].Header().Name, err, set, sig)
		}
		if !sig.ValidityPeriod(time.Now()) {
			t.Errorf("RRSIG of %s not valid now: %v", dns.TypeToString[typ], sig)
		}
		if sig.Hdr.Ttl != set[0].Header().Ttl || sig.OrigTtl != set[0].Header().Ttl {
			t.Errorf("RRSIG TTLs %d/%d, RRset TTL %d", sig.Hdr.Ttl, sig.OrigTtl, set[0].Header().Ttl)
		}
	}
	for typ := range sigs {
		if sets[typ] == nil {
			t.Errorf("RRSIG for %s without the RRset", dns.TypeToString[typ])
		}
	}
	return sigs
}

// viaWire packs and unpacks m, as a client sees it.
func viaWire(t *testing.T, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(b); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return out
}

func zoneKey(z *Zones) *dns.DNSKEY { return z.byName["example.com."].signer.key }

func TestDNSSECPositive(t *testing.T) {
	for _, alg := range []string{"ECDSAP256SHA256", "ED25519"} {
		t.Run(alg, func(t *testing.T) {
			z := signedZones(t, alg)
			key := zoneKey(z)
			st := newFakeSteerer()
			for _, tc := range []struct {
				name   string
				qtype  uint16
				n      int // records in the answer, RRSIGs excluded
				labels uint8
			}{
				{"www.example.com.", dns.TypeA, 2, 3},
				{"WwW.ExAmPlE.CoM.", dns.TypeA, 2, 3},
				{"cdn.example.com.", dns.TypeA, 3, 3},    // proxied
				{"cdn.example.com.", dns.TypeAAAA, 1, 3}, // proxied
				{"x.edge.example.com.", dns.TypeA, 2, 4}, // proxied wildcard
				{"x.wild.example.com.", dns.TypeA, 1, 4}, // wildcard: signed at the query name
				{"alias.example.com.", dns.TypeA, 3, 3},  // CNAME then A, both signed
				{"example.com.", dns.TypeMX, 1, 2},
				{"_sip._tcp.example.com.", dns.TypeSRV, 1, 4},
			} {
				r := viaWire(t, answer1(z, st, withDO(query(tc.name, tc.qtype), 1232), false))
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
					t.Errorf("%s: rcode %s", tc.name, dns.RcodeToString[r.Rcode])
				}
				if o := r.IsEdns0(); o == nil || !o.Do() {
					t.Errorf("%s: DO not echoed", tc.name)
				}
				var n int
				for _, rr := range r.Answer {
					if rr.Header().Rrtype != dns.TypeRRSIG {
						n++
					}
				}
				if n != tc.n {
					t.Errorf("%s %s: %d records, want %d: %v", tc.name, dns.TypeToString[tc.qtype], n, tc.n, r.Answer)
				}
				sigs := verifySection(t, key, r.Answer)
				if s := sigs[tc.qtype]; s == nil || s.Labels != tc.labels || s.SignerName != "example.com." || s.KeyTag != key.KeyTag() {
					t.Errorf("%s: RRSIG %v, want labels %d", tc.name, s, tc.labels)
				}
			}
		})
	}
}

// answer1 is Answer from a fixed client over UDP or TCP.
func answer1(z *Zones, st Steerer, q *dns.Msg, tcp bool) *dns.Msg {
	return Answer(z, st, q, client, tcp)
}

func TestDNSSECDNSKEY(t *testing.T) {
	z := signedZones(t, "ECDSAP256SHA256")
	_, dnskeyText, dsText := testKey(t, "ECDSAP256SHA256")
	r := viaWire(t, answer1(z, nil, withDO(query("example.com.", dns.TypeDNSKEY), 1232), false))
	var key *dns.DNSKEY
	for _, rr := range r.Answer {
		if k, ok := rr.(*dns.DNSKEY); ok {
			key = k
		}
	}
	if key == nil {
		t.Fatalf("no DNSKEY: %v", r)
	}
	if key.Flags != 257 || key.Protocol != 3 || key.Algorithm != dns.ECDSAP256SHA256 || key.Hdr.Ttl != 3600 {
		t.Errorf("DNSKEY %v", key)
	}
	verifySection(t, key, r.Answer)
	// The key served is the one GenerateDNSSECKey printed, and so is its DS.
	want, err := dns.NewRR(dnskeyText)
	if err != nil {
		t.Fatal(err)
	}
	if want.(*dns.DNSKEY).PublicKey != key.PublicKey || want.(*dns.DNSKEY).KeyTag() != key.KeyTag() {
		t.Errorf("served %v, generated %v", key, want)
	}
	ds, err := dns.NewRR(dsText)
	if err != nil {
		t.Fatal(err)
	}
	if got := key.ToDS(dns.SHA256); !strings.EqualFold(got.Digest, ds.(*dns.DS).Digest) || got.KeyTag != ds.(*dns.DS).KeyTag {
		t.Errorf("DS %v, want %v", got, ds)
	}
	// DNSKEY at a name other than the apex: NODATA.
	r = answer1(z, nil, withDO(query("www.example.com.", dns.TypeDNSKEY), 1232), false)
	if len(r.Answer) != 0 {
		t.Errorf("DNSKEY below the apex: %v", r.Answer)
	}
}

// negativeNSEC checks a signed negative answer and returns its NSEC.
func negativeNSEC(t *testing.T, z *Zones, r *dns.Msg) *dns.NSEC {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !r.Authoritative {
		t.Fatalf("rcode %s, answer %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	verifySection(t, zoneKey(z), r.Ns)
	var nsec *dns.NSEC
	var soa *dns.SOA
	for _, rr := range r.Ns {
		switch rr := rr.(type) {
		case *dns.NSEC:
			nsec = rr
		case *dns.SOA:
			soa = rr
		}
	}
	if nsec == nil || soa == nil {
		t.Fatalf("authority %v", r.Ns)
	}
	if nsec.Hdr.Ttl != 60 || soa.Hdr.Ttl != 60 {
		t.Errorf("TTLs NSEC %d, SOA %d; want the negative TTL 60", nsec.Hdr.Ttl, soa.Hdr.Ttl)
	}
	return nsec
}

func TestDNSSECNXDomainAsNoData(t *testing.T) {
	z := signedZones(t, "ECDSAP256SHA256")
	for _, name := range []string{"nope.example.com.", "a.nope.example.com.", "NoPe.Example.com."} {
		r := viaWire(t, answer1(z, nil, withDO(query(name, dns.TypeA), 1232), false))
		nsec := negativeNSEC(t, z, r)
		lname := strings.ToLower(name)
		if !strings.EqualFold(nsec.Hdr.Name, name) || nsec.NextDomain != `\000.`+lname {
			t.Errorf("%s: NSEC %s -> %s", name, nsec.Hdr.Name, nsec.NextDomain)
		}
		if !slices.Equal(nsec.TypeBitMap, []uint16{dns.TypeRRSIG, dns.TypeNSEC, 128}) {
			t.Errorf("%s: bitmap %v, want RRSIG NSEC NXNAME", name, nsec.TypeBitMap)
		}
	}
	// A CNAME to a name that does not exist: the CNAME is signed, the target denied.
	r := viaWire(t, answer1(z, nil, withDO(query("dangling.example.com.", dns.TypeA), 1232), false))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
		t.Fatalf("dangling: %v", r)
	}
	verifySection(t, zoneKey(z), r.Answer)
	verifySection(t, zoneKey(z), r.Ns)
}

func TestDNSSECNoData(t *testing.T) {
	z := signedZones(t, "ECDSAP256SHA256")
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []uint16
	}{
		{"mail.example.com.", dns.TypeAAAA, []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC}},
		{"b.deep.example.com.", dns.TypeA, []uint16{dns.TypeRRSIG, dns.TypeNSEC}}, // empty non-terminal
		{"x.wild.example.com.", dns.TypeAAAA, []uint16{dns.TypeA, dns.TypeTXT, dns.TypeRRSIG, dns.TypeNSEC}},
		{"cdn.example.com.", dns.TypeA, []uint16{dns.TypeAAAA, dns.TypeRRSIG, dns.TypeNSEC}}, // proxied, no Steerer
		{"example.com.", dns.TypeAAAA, []uint16{dns.TypeA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT,
			dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY, dns.TypeCAA}},
	} {
		r := viaWire(t, answer1(z, nil, withDO(query(tc.name, tc.qtype), 1232), false))
		nsec := negativeNSEC(t, z, r)
		if nsec.Hdr.Name != tc.name || !slices.Equal(nsec.TypeBitMap, tc.want) {
			t.Errorf("%s %s: NSEC %v, want bitmap %v", tc.name, dns.TypeToString[tc.qtype], nsec, tc.want)
		}
	}
}

func TestDNSSECWithoutDOUnchanged(t *testing.T) {
	plain := testZones(t)
	signed := signedZones(t, "ED25519")
	st := newFakeSteerer()
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"www.example.com.", dns.TypeA}, {"cdn.example.com.", dns.TypeA}, {"nope.example.com.", dns.TypeA},
		{"mail.example.com.", dns.TypeAAAA}, {"x.wild.example.com.", dns.TypeTXT}, {"example.com.", dns.TypeNS},
		{"big.example.com.", dns.TypeTXT},
	} {
		for _, mk := range []func() *dns.Msg{
			func() *dns.Msg { return query(q.name, q.qtype) },
			func() *dns.Msg { return withEDNS(query(q.name, q.qtype), 1232) },
		} {
			qa, qb := mk(), mk()
			qb.Id = qa.Id
			a, b := answer1(plain, st, qa, false), answer1(signed, st, qb, false)
			if a.String() != b.String() {
				t.Errorf("%s %s: signed zone without DO differs:\n%v\n%v", q.name, dns.TypeToString[q.qtype], a, b)
			}
		}
	}
	// The unsigned zone sub.example.com answers without RRSIGs even with DO.
	r := answer1(signed, st, withDO(query("www.sub.example.com.", dns.TypeA), 1232), false)
	r2 := answer1(signed, st, withDO(query("nope.sub.example.com.", dns.TypeA), 1232), false)
	for _, m := range []*dns.Msg{r, r2} {
		for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Ns...) {
			if typ := rr.Header().Rrtype; typ == dns.TypeRRSIG || typ == dns.TypeNSEC {
				t.Errorf("unsigned zone answered with %s", dns.TypeToString[typ])
			}
		}
	}
	if r2.Rcode != dns.RcodeNameError {
		t.Errorf("unsigned NXDOMAIN became %s", dns.RcodeToString[r2.Rcode])
	}
}

func TestDNSSECTruncation(t *testing.T) {
	z := signedZones(t, "ECDSAP256SHA256")
	st := newFakeSteerer()
	for _, size := range []uint16{512, 1232, 4096} {
		for _, name := range []string{"www.example.com.", "cdn.example.com.", "mid.example.com.", "big.example.com.", "nope.example.com."} {
			for _, qt := range []uint16{dns.TypeA, dns.TypeTXT, dns.TypeANY} {
				r := answer1(z, st, withDO(query(name, qt), size), false)
				b, err := r.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if len(b) > int(size) {
					t.Errorf("%s %s at %d: %d bytes", name, dns.TypeToString[qt], size, len(b))
				}
			}
		}
	}
	// mid fits in 4096 unsigned and signed; big needs TCP, where all of it is signed.
	if r := answer1(z, st, withDO(query("mid.example.com.", dns.TypeTXT), 4096), false); r.Truncated {
		t.Error("mid truncated at 4096")
	}
	r := viaWire(t, answer1(z, st, withDO(query("big.example.com.", dns.TypeTXT), 4096), true))
	if r.Truncated || len(r.Answer) != 41 {
		t.Errorf("big over TCP: TC %v, %d records", r.Truncated, len(r.Answer))
	}
	verifySection(t, zoneKey(z), r.Answer)
}

func TestDNSSECSignatureCache(t *testing.T) {
	z := signedZones(t, "ECDSAP256SHA256") // ECDSA signatures are randomized
	sigOf := func(name string) *dns.RRSIG {
		r := answer1(z, nil, withDO(query(name, dns.TypeA), 1232), false)
		for _, rr := range r.Answer {
			if s, ok := rr.(*dns.RRSIG); ok {
				return s
			}
		}
		t.Fatalf("no RRSIG: %v", r)
		return nil
	}
	a, b := sigOf("www.example.com."), sigOf("WWW.example.com.")
	if a.Signature != b.Signature {
		t.Error("the same RRset was signed twice")
	}
	if b.Hdr.Name != "WWW.example.com." {
		t.Errorf("cached RRSIG owner %q", b.Hdr.Name)
	}
	// A cached signature near its expiration is replaced.
	s := z.byName["example.com."].signer
	s.mu.Lock()
	for k, v := range s.cache {
		old := *v
		old.Expiration = uint32(time.Now().Add(time.Hour).Unix())
		s.cache[k] = &old
	}
	s.mu.Unlock()
	if c := sigOf("www.example.com."); c.Signature == a.Signature || !c.ValidityPeriod(time.Now().Add(30*time.Hour)) {
		t.Errorf("stale signature served: %v", c)
	}
	// The cache is bounded.
	rr := []dns.RR{&dns.TXT{Hdr: header("example.com.", dns.TypeTXT, 60)}}
	for i := range maxSigCache + 10 {
		rr[0].(*dns.TXT).Txt = []string{strings.Repeat("x", i%50), string(rune('a' + i%26)), strings.Repeat("y", i/50)}
		if _, err := s.sign(rr, "example.com.", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.cache); n > maxSigCache {
		t.Errorf("cache holds %d", n)
	}
}

func TestDNSSECCompileErrors(t *testing.T) {
	priv, _, _ := testKey(t, "ECDSAP256SHA256")
	rsa := "Private-key-format: v1.3\nAlgorithm: 8 (RSASHA256)\nModulus: AQAB\n"
	for _, tc := range []struct{ key, want string }{
		{"", "required"},
		{"garbage", "Algorithm"},
		{rsa, "algorithm 8"},
		{strings.Replace(priv, "PrivateKey: ", "PrivateKey: !!", 1), "PrivateKey"},
		{"Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\nPrivateKey: AAAA\n", "not a valid private key"},
		{strings.Replace(priv, "v1.3", "v9", 1), "not a valid private key"},
	} {
		specs := testSpecs()
		specs[0].DNSSEC = &DNSSECSpec{Key: tc.key}
		_, err := Compile(specs, 1)
		if err == nil || !strings.Contains(err.Error(), "dns.zones[0].dnssec.key: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key %q: error %v, want dns.zones[0].dnssec.key: ...%s", short(tc.key), err, tc.want)
		}
	}
}

func TestGenerateDNSSECKey(t *testing.T) {
	for _, alg := range []string{"ecdsap256sha256", "13", "ED25519", "15"} {
		priv, dnskey, ds, err := GenerateDNSSECKey("Example.org", alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		k, err := dns.NewRR(dnskey)
		if err != nil || k.Header().Name != "example.org." {
			t.Fatalf("%s: DNSKEY %q: %v", alg, dnskey, err)
		}
		d, err := dns.NewRR(ds)
		if err != nil || d.(*dns.DS).KeyTag != k.(*dns.DNSKEY).KeyTag() || d.(*dns.DS).DigestType != dns.SHA256 {
			t.Fatalf("%s: DS %q: %v", alg, ds, err)
		}
		z, err := Compile([]ZoneSpec{{Name: "example.org", NS: []string{"ns1"}, DNSSEC: &DNSSECSpec{Key: priv}}}, 1)
		if err != nil {
			t.Fatalf("%s: compile: %v", alg, err)
		}
		if got := z.byName["example.org."].signer.key; got.PublicKey != k.(*dns.DNSKEY).PublicKey || got.Flags != 257 {
			t.Errorf("%s: compiled key %v, generated %v", alg, got, k)
		}
	}
	for _, bad := range [][2]string{{"example.org", "RSASHA256"}, {"", "13"}, {".", "13"}} {
		if _, _, _, err := GenerateDNSSECKey(bad[0], bad[1]); err == nil {
			t.Errorf("GenerateDNSSECKey(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

// TestDNSSECDelv has BIND's delv validate answers against the zone's key as a trust
// anchor, when delv is installed.
func TestDNSSECDelv(t *testing.T) {
	delv, err := exec.LookPath("delv")
	if err != nil {
		t.Skip("delv not installed")
	}
	z := signedZones(t, "ECDSAP256SHA256")
	s := startServer(t, z, Config{Steerer: newFakeSteerer(), RateLimit: -1})
	host, port, _ := net.SplitHostPort(s.Addr())
	key := zoneKey(z)
	anchors := filepath.Join(t.TempDir(), "anchors.conf")
	conf := fmt.Sprintf("trust-anchors {\n  %q static-key %d %d %d %q;\n};\n",
		key.Hdr.Name, key.Flags, key.Protocol, key.Algorithm, key.PublicKey)
	if err := os.WriteFile(anchors, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range [][2]string{
		{"www.example.com", "A"}, {"cdn.example.com", "A"}, {"x.wild.example.com", "TXT"},
		{"example.com", "DNSKEY"}, {"mail.example.com", "AAAA"}, {"nope.example.com", "A"},
		{"alias.example.com", "A"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, delv, "@"+host, "-p", port, "-a", anchors,
			"+root=example.com", "+nomtrace", q[0], q[1]).CombinedOutput()
		cancel()
		text := string(out)
		if err != nil || !strings.Contains(text, "; fully validated") && !strings.Contains(text, "; negative response, fully validated") {
			t.Errorf("delv %s %s: %v\n%s", q[0], q[1], err, text)
		}
	}
}
