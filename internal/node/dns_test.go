package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"rhizome/internal/dns"
)

// dnsQuery asks addr for name's A records and returns the addresses.
func dnsQuery(t *testing.T, addr, name string) ([]string, *mdns.Msg) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	m.RecursionDesired = false
	c := &mdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s at %s: %v", name, addr, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out, r
}

// TestDNSSteersAroundDeadNodes: every node answers for the zone; a proxied name is
// answered with healthy nodes only; a node killed without a goodbye leaves every other
// node's answers once the mesh declares it dead.
func TestDNSSteersAroundDeadNodes(t *testing.T) {
	op := newKey(t)
	var nodes []*Node
	var seed string
	for i := range 3 {
		var join []string
		if i > 0 {
			join = []string{seed}
		}
		boot, _ := meshBootstrap(t, fmt.Sprintf("n%d", i), join, op)
		boot.DNS = "127.0.0.1:0"
		n := start(t, boot)
		if i == 0 {
			seed = n.MeshAddr()
		}
		nodes = append(nodes, n)
		t.Cleanup(func() { stop(t, n) })
	}
	waitFor(t, "all members alive", 15*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Members()) != 3 {
				return false
			}
		}
		return true
	})
	o := origin(t, "v1")
	keyText, _, _, err := dns.GenerateDNSSECKey("example.com", "ED25519")
	if err != nil {
		t.Fatal(err)
	}
	indented := "          " + strings.ReplaceAll(strings.TrimSpace(keyText), "\n", "\n          ")
	src := string(source(1, o)) + `dns:
  nodes:
    - {name: n0, addresses: [192.0.2.10]}
    - {name: n1, addresses: [192.0.2.11]}
    - {name: n2, addresses: [192.0.2.12]}
  zones:
    - name: example.com
      ns: [ns1.example.com]
      records:
        - {name: ns1, type: A, value: 192.0.2.53}
        - {name: "@", type: MX, value: "10 mail.example.com."}
      proxied:
        - {name: www, ttl: 20s, answers: 3}
      dnssec:
        key: |
` + indented + "\n"
	if code, out := push(t, nodes[0], signed(t, []byte(src), op)); code != 200 {
		t.Fatalf("push: %s", out)
	}
	all := []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}
	waitFor(t, "every node answers with all three", 15*time.Second, func() bool {
		for _, n := range nodes {
			if got, _ := dnsQuery(t, n.DNSAddr(), "WWW.example.com"); !slices.Equal(got, all) {
				return false
			}
		}
		return true
	})
	_, r := dnsQuery(t, nodes[1].DNSAddr(), "www.example.com")
	if !r.Authoritative || r.Answer[0].Header().Ttl != 20 {
		t.Fatalf("answer: %v", r)
	}
	// Signed with DO: the steered answer carries an RRSIG that verifies with the zone's key.
	m := new(mdns.Msg)
	m.SetQuestion("www.example.com.", mdns.TypeA)
	m.SetEdns0(1232, true)
	signedAns, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, nodes[0].DNSAddr())
	if err != nil {
		t.Fatal(err)
	}
	k := new(mdns.Msg)
	k.SetQuestion("example.com.", mdns.TypeDNSKEY)
	keys, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(k, nodes[0].DNSAddr())
	if err != nil || len(keys.Answer) == 0 {
		t.Fatalf("DNSKEY: %v %v", keys, err)
	}
	var rrset []mdns.RR
	var sig *mdns.RRSIG
	for _, rr := range signedAns.Answer {
		if s, ok := rr.(*mdns.RRSIG); ok {
			sig = s
		} else {
			rrset = append(rrset, rr)
		}
	}
	if sig == nil || sig.Verify(keys.Answer[0].(*mdns.DNSKEY), rrset) != nil {
		t.Fatalf("steered answer not signed or not verifying: %v", signedAns)
	}
	if _, r := dnsQuery(t, nodes[1].DNSAddr(), "nope.example.com"); r.Rcode != mdns.RcodeNameError || len(r.Ns) == 0 {
		t.Fatalf("NXDOMAIN expected with the SOA: %v", r)
	}
	if _, r := dnsQuery(t, nodes[1].DNSAddr(), "example.org"); r.Rcode != mdns.RcodeRefused {
		t.Fatalf("REFUSED expected for a zone not served: %v", r)
	}

	// A drained node leaves the answers (its own too) and comes back when undrained.
	if err := nodes[1].SetDraining(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 out of the answers while draining", 10*time.Second, func() bool {
		for _, n := range nodes {
			if got, _ := dnsQuery(t, n.DNSAddr(), "www.example.com"); slices.Contains(got, "192.0.2.11") || len(got) != 2 {
				return false
			}
		}
		return true
	})
	if code, body := get(t, nodes[1], "/"); code != 200 || body != "v1" {
		t.Fatalf("a draining node stopped serving: %d %q", code, body)
	}
	if err := nodes[1].SetDraining(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 back in the answers", 10*time.Second, func() bool {
		got, _ := dnsQuery(t, nodes[0].DNSAddr(), "www.example.com")
		return slices.Equal(got, all)
	})

	nodes[2].Kill()
	took := waitFor(t, "n2 gone from the answers of n0 and n1", 15*time.Second, func() bool {
		for _, n := range nodes[:2] {
			got, _ := dnsQuery(t, n.DNSAddr(), "www.example.com")
			if slices.Contains(got, "192.0.2.12") || len(got) != 2 {
				return false
			}
		}
		return true
	})
	t.Logf("killed node out of DNS answers after %v", took)
}
