package dns

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNSSEC online signing. A zone with a DNSSECSpec has one key, used as a combined signing
// key (flags 257, SEP), published as the apex DNSKEY. Answers to queries with the EDNS DO
// bit carry an RRSIG for every RRset of the answer and authority sections, made at answer
// time (signatures of repeated RRsets are cached). Denial of existence is "compact"
// (RFC 9824): a name that does not exist is answered NOERROR with an NSEC at the name
// whose next name is "\000.<name>" and whose bitmap is RRSIG NSEC NXNAME; a type that
// does not exist gets an NSEC at the name listing the types that do. Wildcard answers are
// synthesized at the query name and signed as if that name existed (RRSIG labels = the
// query name's labels), which needs no wildcard proof.
const (
	sigBackdate  = time.Hour      // inception is this long before signing: clock skew
	sigValidity  = 48 * time.Hour // expiration is this long after signing
	sigRefresh   = 24 * time.Hour // a cached signature with less left is made again
	maxSigCache  = 10000          // cached signatures per zone
	dnskeyFlags  = 257            // ZONE and SEP: a combined signing key
	nxnameBitmap = dns.TypeNXNAME // RFC 9824 section 3.4
	dnskeyTTLGen = uint32(3600)   // the TTL in GenerateDNSSECKey's DNSKEY text
	keyFileName  = "dnssec.key"   // how miekg's key parser names the input in errors
	maxKeyText   = 16 << 10       // a private-key file is a few hundred bytes
)

// DNSSECSpec turns on DNSSEC signing of a zone (the bundle's dns.zones[i].dnssec).
type DNSSECSpec struct {
	// Key is the zone's private key in BIND's private-key file format ("Private-key-format:
	// v1.3", "Algorithm: 13 (ECDSAP256SHA256)", "PrivateKey: ..."), algorithm
	// ECDSAP256SHA256 (13) or ED25519 (15). The public key, the DNSKEY (flags 257) and its
	// key tag are derived from it. GenerateDNSSECKey makes one.
	Key string
}

// signer is a zone's compiled key and its signature cache; safe for concurrent use.
type signer struct {
	key  *dns.DNSKEY // the apex DNSKEY, owned by the zone
	priv crypto.Signer

	mu    sync.Mutex
	cache map[string]*dns.RRSIG // by setKey; never modified once stored
}

// GenerateDNSSECKey makes a new key for zone with algorithm alg ("ECDSAP256SHA256" or
// "13", "ED25519" or "15"; case-insensitive). It returns the private key in BIND's
// private-key file format (DNSSECSpec.Key), the DNSKEY record and the DS record (SHA-256
// digest) to give the registrar, both in zone-file presentation format.
func GenerateDNSSECKey(zone string, alg string) (privateText, dnskey, ds string, err error) {
	origin, err := zoneName(zone)
	if err != nil {
		return "", "", "", err
	}
	var a uint8
	switch strings.ToUpper(strings.TrimSpace(alg)) {
	case "ECDSAP256SHA256", "13":
		a = dns.ECDSAP256SHA256
	case "ED25519", "15":
		a = dns.ED25519
	default:
		return "", "", "", fmt.Errorf("algorithm %q: want ECDSAP256SHA256 (13) or ED25519 (15)", short(alg))
	}
	k := &dns.DNSKEY{Hdr: header(origin, dns.TypeDNSKEY, dnskeyTTLGen), Flags: dnskeyFlags, Protocol: 3, Algorithm: a}
	priv, err := k.Generate(256)
	if err != nil {
		return "", "", "", fmt.Errorf("generate key: %w", err)
	}
	d := k.ToDS(dns.SHA256)
	if d == nil {
		return "", "", "", errors.New("generate key: cannot compute the DS record")
	}
	return k.PrivateKeyString(priv), k.String(), d.String(), nil
}

// dnssec compiles a DNSSECSpec at path p ("dns.zones[i].dnssec"); nil when it is bad
// (the error is recorded).
func (c *compiler) dnssec(p string, spec *DNSSECSpec, origin string, ttl uint32) *signer {
	s, err := newSigner(spec.Key, origin, ttl)
	if err != nil {
		c.bad(p+".key", "%v", err)
		return nil
	}
	return s
}

// newSigner reads a private key for the zone origin; the DNSKEY gets the TTL ttl.
func newSigner(text, origin string, ttl uint32) (*signer, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("required: a private key in BIND's private-key file format (see GenerateDNSSECKey)")
	}
	if len(text) > maxKeyText {
		return nil, fmt.Errorf("%d bytes: not a private-key file", len(text))
	}
	fields := keyFields(text)
	algStr, _, _ := strings.Cut(fields["algorithm"], " ")
	alg, err := strconv.ParseUint(algStr, 10, 8)
	if err != nil {
		return nil, errors.New(`no "Algorithm:" line: want BIND's private-key file format`)
	}
	k := &dns.DNSKEY{Hdr: header(origin, dns.TypeDNSKEY, ttl), Flags: dnskeyFlags, Protocol: 3, Algorithm: uint8(alg)}
	switch uint8(alg) {
	case dns.ECDSAP256SHA256:
		// miekg reads ECDSA keys against a known public key: derive it first.
		raw, err := base64.StdEncoding.DecodeString(fields["privatekey"])
		if err != nil || len(raw) == 0 {
			return nil, errors.New(`"PrivateKey:" missing or not base64`)
		}
		pk, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("not a P-256 private key: %v", err)
		}
		pub, err := pk.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil || len(pub) != 65 {
			return nil, errors.New("cannot derive the public key")
		}
		k.PublicKey = base64.StdEncoding.EncodeToString(pub[1:])
	case dns.ED25519:
	default:
		return nil, fmt.Errorf("algorithm %d: want 13 (ECDSAP256SHA256) or 15 (ED25519)", alg)
	}
	priv, err := k.ReadPrivateKey(strings.NewReader(text), keyFileName)
	if err != nil {
		return nil, fmt.Errorf("not a valid private key: %s", strings.TrimPrefix(err.Error(), "dns: "))
	}
	cs, ok := priv.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	if uint8(alg) == dns.ED25519 {
		ek, ok := priv.(ed25519.PrivateKey)
		if !ok || len(ek) != ed25519.PrivateKeySize {
			return nil, errors.New(`"PrivateKey:" missing or not a 32-byte Ed25519 seed`)
		}
		k.PublicKey = base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))
	}
	s := &signer{key: k, priv: cs, cache: map[string]*dns.RRSIG{}}
	// Prove the key works before a server relies on it.
	probe := []dns.RR{&dns.TXT{Hdr: header(origin, dns.TypeTXT, ttl), Txt: []string{"probe"}}}
	sig, err := s.sign(probe, origin, time.Now())
	if err != nil {
		return nil, fmt.Errorf("cannot sign with the key: %v", err)
	}
	if err := sig.Verify(k, probe); err != nil {
		return nil, fmt.Errorf("the key does not verify its own signature: %v", err)
	}
	return s, nil
}

// keyFields reads the "Name: value" lines of a private-key file, names lower case.
func keyFields(text string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
		}
	}
	return m
}

// sign returns the RRSIG of rrset (one owner, type and class) by the zone origin's key,
// from the cache when one there has more than sigRefresh left.
func (s *signer) sign(rrset []dns.RR, origin string, now time.Time) (*dns.RRSIG, error) {
	key, cacheable := setKey(rrset)
	var cached *dns.RRSIG
	if cacheable {
		s.mu.Lock()
		cached = s.cache[key]
		s.mu.Unlock()
	}
	if cached != nil && time.Unix(int64(cached.Expiration), 0).Sub(now) > sigRefresh &&
		time.Unix(int64(cached.Inception), 0).Before(now) {
		sig := dns.Copy(cached).(*dns.RRSIG)
		sig.Hdr.Name = rrset[0].Header().Name // the cache is case-insensitive
		return sig, nil
	}
	h := rrset[0].Header()
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Name: h.Name, Rrtype: dns.TypeRRSIG, Class: h.Class, Ttl: h.Ttl},
		Algorithm:  s.key.Algorithm,
		KeyTag:     s.key.KeyTag(),
		SignerName: origin,
		Inception:  uint32(now.Add(-sigBackdate).Unix()),
		Expiration: uint32(now.Add(sigValidity).Unix()),
	}
	if err := sig.Sign(s.priv, rrset); err != nil {
		return nil, err
	}
	if !cacheable {
		return sig, nil
	}
	stored := dns.Copy(sig).(*dns.RRSIG)
	s.mu.Lock()
	if len(s.cache) >= maxSigCache {
		for k := range s.cache { // evict an arbitrary entry
			delete(s.cache, k)
			break
		}
	}
	s.cache[key] = stored
	s.mu.Unlock()
	return sig, nil
}

// setKey is the cache key of an RRset: its records in wire format, owner lower case.
func setKey(rrset []dns.RR) (string, bool) {
	var b []byte
	for _, rr := range rrset {
		c := dns.Copy(rr)
		c.Header().Name = strings.ToLower(c.Header().Name)
		buf := make([]byte, dns.Len(c)+32)
		n, err := dns.PackRR(c, buf, 0, nil, false)
		if err != nil {
			return "", false
		}
		b = append(b, buf[:n]...)
	}
	return string(b), true
}

// denial is what a negative answer needs for its NSEC: the zone and node of the name
// (node nil: the name does not exist), the name as asked and the type that was asked.
type denial struct {
	zn    *zone
	n     *node
	name  string
	qtype uint16
}

// sign adds DNSSEC records to r.resp for a query with the DO bit: the NSEC of a
// negative answer (turning NXDOMAIN into NOERROR, RFC 9824), then an RRSIG after every
// RRset of the answer and authority sections whose zone has a key.
func (r *resolver) sign() {
	now := time.Now()
	if d := r.deny; d != nil && d.zn.signer != nil {
		// The negative TTL, as the SOA's (RFC 9077); the next name is the name's
		// immediate successor, so that the NSEC covers no other name.
		nsec := &dns.NSEC{Hdr: header(d.name, dns.TypeNSEC, min(d.zn.soa.Hdr.Ttl, d.zn.soa.Minttl)),
			NextDomain: `\000.` + strings.ToLower(d.name)}
		if d.n == nil {
			nsec.TypeBitMap = []uint16{dns.TypeRRSIG, dns.TypeNSEC, nxnameBitmap}
			if r.resp.Rcode == dns.RcodeNameError {
				r.resp.Rcode = dns.RcodeSuccess // RFC 9824 section 3.2
			}
		} else {
			nsec.TypeBitMap = d.n.typeBitmap(d.qtype)
		}
		r.resp.Ns = append(r.resp.Ns, nsec)
	}
	r.resp.Answer = r.signSection(r.resp.Answer, now)
	r.resp.Ns = r.signSection(r.resp.Ns, now)
}

// typeBitmap is the NSEC bitmap of a node answered NODATA for qtype: its types (A and
// AAAA for a proxied name), RRSIG and NSEC, without qtype.
func (n *node) typeBitmap(qtype uint16) []uint16 {
	types := append(slices.Clone(n.types), dns.TypeRRSIG, dns.TypeNSEC)
	if n.proxied != nil {
		types = append(types, dns.TypeA, dns.TypeAAAA)
	}
	types = slices.DeleteFunc(types, func(t uint16) bool { return t == qtype })
	slices.Sort(types)
	return slices.Compact(types)
}

// signSection returns rrs with the RRSIG of each RRset after it, for the RRsets in a
// zone with a key. RRsets keep the order of their first record.
func (r *resolver) signSection(rrs []dns.RR, now time.Time) []dns.RR {
	type setID struct {
		name  string
		typ   uint16
		class uint16
	}
	var order []setID
	sets := map[setID][]dns.RR{}
	for _, rr := range rrs {
		h := rr.Header()
		id := setID{strings.ToLower(h.Name), h.Rrtype, h.Class}
		if _, ok := sets[id]; !ok {
			order = append(order, id)
		}
		sets[id] = append(sets[id], rr)
	}
	out := make([]dns.RR, 0, 2*len(rrs))
	for _, id := range order {
		set := sets[id]
		out = append(out, set...)
		if id.typ == dns.TypeRRSIG || id.typ == dns.TypeOPT {
			continue
		}
		zn := r.z.find(id.name)
		if zn == nil || zn.signer == nil {
			continue
		}
		sig, err := zn.signer.sign(set, zn.origin, now)
		if err != nil {
			continue // cannot happen with a key that signed at Compile; answer unsigned
		}
		out = append(out, sig)
	}
	return out
}
