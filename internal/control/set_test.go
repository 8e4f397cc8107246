package control

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestSetAddIdempotent(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	c := NewSet()
	for _, rec := range []Record{halt(hashA, 1), unhealthy(hashA, "edge-fra-01", 2), kill("waf", "", true, 3)} {
		s := f.sign(t, rec)
		r, isNew, err := c.Add(v, s)
		if err != nil || !isNew || r == nil || r.Kind != rec.Kind {
			t.Fatalf("first Add(%s) = %+v, %v, %v", rec.Kind, r, isNew, err)
		}
		digest := c.Digest()
		// The same record again, also as it comes back from the wire.
		d, err := Decode(s.Encode())
		if err != nil {
			t.Fatal(err)
		}
		for _, again := range []Signed{s, d} {
			r, isNew, err = c.Add(v, again)
			if err != nil || isNew || r == nil || r.Kind != rec.Kind {
				t.Fatalf("second Add(%s) = %+v, %v, %v; want the record, false, nil", rec.Kind, r, isNew, err)
			}
		}
		if c.Digest() != digest {
			t.Errorf("%s: digest changed on a repeated Add", rec.Kind)
		}
	}
	if n := len(c.Signed()); n != 3 {
		t.Errorf("set holds %d records, want 3", n)
	}
}

func TestSetAddRefused(t *testing.T) {
	f := newFixture(t)
	c := NewSet()
	s, err := Sign(halt(hashA, 1), f.other)
	if err != nil {
		t.Fatal(err)
	}
	r, isNew, err := c.Add(f.verifier(), s)
	if err == nil || isNew || r != nil {
		t.Fatalf("Add(untrusted) = %+v, %v, %v", r, isNew, err)
	}
	if len(c.Signed()) != 0 || c.Digest() != "" || c.Bundle(hashA) != (BundleState{}) {
		t.Errorf("refused record changed the set")
	}
}

func TestSetDigest(t *testing.T) {
	f := newFixture(t)
	recs := []Record{
		halt(hashA, 1), resume(hashA, 2), rollback(hashB, 3), unhealthy(hashA, "edge-fra-01", 4),
		unhealthy(hashA, "edge-ams-02", 4), kill("bots", "", true, 5), kill("bots", "shop", false, 6),
	}
	signed := make([]Signed, len(recs))
	for i, r := range recs {
		signed[i] = f.sign(t, r)
	}
	build := func(order []int) *Set {
		c := NewSet()
		for _, i := range order {
			if _, _, err := c.Add(f.verifier(), signed[i]); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	if d := NewSet().Digest(); d != "" {
		t.Errorf("empty set digest %q, want \"\"", d)
	}
	inOrder := []int{0, 1, 2, 3, 4, 5, 6}
	ref := build(inOrder).Digest()
	if len(ref) != 16 {
		t.Errorf("digest %q: want 16 hex digits", ref)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		order := slices.Clone(inOrder)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		if d := build(order).Digest(); d != ref {
			t.Errorf("order %v: digest %s, want %s", order, d, ref)
		}
	}
	seen := map[string]bool{ref: true}
	for drop := range inOrder {
		fewer := slices.Delete(slices.Clone(inOrder), drop, drop+1)
		d := build(fewer).Digest()
		if seen[d] {
			t.Errorf("set without record %d has a digest %s already seen", drop, d)
		}
		seen[d] = true
	}
}

func TestSetSignedOldestFirst(t *testing.T) {
	f := newFixture(t)
	c := NewSet()
	// Added newest first, with a tie at 5.
	for _, rec := range []Record{halt(hashA, 9), kill("waf", "", true, 7), resume(hashB, 5), halt(hashB, 5), unhealthy(hashA, "edge-fra-01", 3), rollback(hashB, 1)} {
		f.add(t, c, rec)
	}
	signed := c.Signed()
	recs := c.Records()
	if len(signed) != 6 || len(recs) != 6 {
		t.Fatalf("got %d signed, %d records, want 6", len(signed), len(recs))
	}
	var ats []int64
	for i, s := range signed {
		r, err := f.verifier().Verify(s)
		if err != nil {
			t.Fatal(err)
		}
		if r.At != recs[i].At || r.Kind != recs[i].Kind {
			t.Errorf("Signed()[%d] is %s@%d, Records()[%d] is %s@%d", i, r.Kind, r.At, i, recs[i].Kind, recs[i].At)
		}
		ats = append(ats, r.At)
		if i > 0 && r.At == ats[i-1] && signed[i-1].ID() > s.ID() {
			t.Errorf("records %d and %d tie on At but are not ordered by id", i-1, i)
		}
	}
	want := []int64{at(1), at(3), at(5), at(5), at(7), at(9)}
	if !slices.Equal(ats, want) {
		t.Errorf("Signed() times %v, want %v", ats, want)
	}
	if NewSet().Signed() != nil || NewSet().Records() != nil {
		t.Errorf("empty set: want nil lists")
	}
}

// step is a record for the bundle-state tests: a kind, a time and (for unhealthy) a node.
type step struct {
	kind string
	n    int
	node string
}

func (s step) record(b string) Record {
	switch s.kind {
	case KindHalt:
		return halt(b, s.n)
	case KindResume:
		return resume(b, s.n)
	case KindRollback:
		return rollback(b, s.n)
	default:
		node := s.node
		if node == "" {
			node = "edge-fra-01"
		}
		return unhealthy(b, node, s.n)
	}
}

func TestSetBundle(t *testing.T) {
	f := newFixture(t)
	opID := keyID(f)
	h, r, u, rb := KindHalt, KindResume, KindUnhealthy, KindRollback
	tests := []struct {
		name   string
		steps  []step // about hashA
		others []step // about hashB
		want   BundleState
		reason []string // substrings of want's reason
	}{
		{name: "no records"},
		{name: "halt", steps: []step{{h, 1, ""}}, want: BundleState{Halted: true}, reason: []string{"halted by operator key", "errors up"}},
		{name: "halt, resume", steps: []step{{h, 1, ""}, {r, 2, ""}}},
		{name: "halt, resume, halt", steps: []step{{h, 1, ""}, {r, 2, ""}, {h, 3, ""}}, want: BundleState{Halted: true}, reason: []string{"halted"}},
		{name: "resume alone", steps: []step{{r, 1, ""}}},
		{name: "rollback", steps: []step{{rb, 1, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"rolled back by operator key", "bad cache rule"}},
		{name: "rollback, resume", steps: []step{{rb, 1, ""}, {r, 2, ""}}},
		{name: "halt, rollback", steps: []step{{h, 1, ""}, {rb, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"rolled back"}},
		{name: "rollback, halt", steps: []step{{rb, 1, ""}, {h, 2, ""}}, want: BundleState{Halted: true}, reason: []string{"halted"}},
		{name: "unhealthy", steps: []step{{u, 1, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01", "5xx rate 12%"}},
		{name: "unhealthy, resume", steps: []step{{u, 1, ""}, {r, 2, ""}}},
		{name: "unhealthy, resume at the same time", steps: []step{{u, 1, ""}, {r, 1, ""}}},
		{name: "resume, newer unhealthy", steps: []step{{r, 1, ""}, {u, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01"}},
		{name: "unhealthy, resume, newer unhealthy from another node", steps: []step{{u, 1, ""}, {r, 2, ""}, {u, 3, "edge-ams-02"}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-ams-02"}},
		{name: "two unhealthy, resume between", steps: []step{{u, 3, "edge-ams-02"}, {r, 2, ""}, {u, 1, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-ams-02"}},
		{name: "halt, newer unhealthy", steps: []step{{h, 1, ""}, {u, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01"}},
		{name: "unhealthy, newer halt", steps: []step{{u, 1, ""}, {h, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01"}},
		{name: "unhealthy, resume, halt", steps: []step{{u, 1, ""}, {r, 2, ""}, {h, 3, ""}}, want: BundleState{Halted: true}, reason: []string{"halted"}},
		{name: "unhealthy, newer rollback", steps: []step{{u, 1, ""}, {rb, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"rolled back by operator"}},
		{name: "rollback, newer unhealthy", steps: []step{{rb, 1, ""}, {u, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01"}},
		{name: "other bundle halted and rolled back", others: []step{{h, 1, ""}, {rb, 2, ""}, {u, 3, ""}}},
		{name: "other bundle resumed", steps: []step{{u, 1, ""}}, others: []step{{r, 2, ""}}, want: BundleState{Halted: true, Rollback: true}, reason: []string{"node edge-fra-01"}},
		{name: "other bundle unhealthy after resume", steps: []step{{h, 1, ""}, {r, 2, ""}}, others: []step{{u, 3, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []Record
			for _, s := range tt.steps {
				recs = append(recs, s.record(hashA))
			}
			for _, s := range tt.others {
				recs = append(recs, s.record(hashB))
			}
			// The order records arrive in does not matter: only At does.
			for _, reverse := range []bool{false, true} {
				c := NewSet()
				order := slices.Clone(recs)
				if reverse {
					slices.Reverse(order)
				}
				for _, rec := range order {
					f.add(t, c, rec)
				}
				got := c.Bundle(hashA)
				if got.Halted != tt.want.Halted || got.Rollback != tt.want.Rollback {
					t.Fatalf("reverse=%v: Bundle = %+v, want halted=%v rollback=%v", reverse, got, tt.want.Halted, tt.want.Rollback)
				}
				if !got.Halted && got != (BundleState{}) {
					t.Errorf("reverse=%v: clear bundle has state %+v", reverse, got)
				}
				for _, sub := range tt.reason {
					if !strings.Contains(got.Reason, sub) {
						t.Errorf("reverse=%v: reason %q does not contain %q", reverse, got.Reason, sub)
					}
				}
				if strings.Contains(got.Reason, "operator key") && !strings.Contains(got.Reason, opID) {
					t.Errorf("reason %q does not name the operator key %s", got.Reason, opID)
				}
			}
		})
	}
}

func keyID(f *fixture) string {
	for id := range f.trust.Keys {
		return id
	}
	return ""
}

func TestSwitches(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		recs   []Record
		want   []Switch // KeyID filled in by the test
		killed map[[2]string]bool
	}{
		{name: "none", killed: map[[2]string]bool{{"waf", ""}: false, {"waf", "shop"}: false}},
		{
			name:   "on, all sites",
			recs:   []Record{kill("waf", "", true, 1)},
			want:   []Switch{{Stage: "waf", On: true, At: at(1)}},
			killed: map[[2]string]bool{{"waf", ""}: true, {"waf", "shop"}: true, {"bots", "shop"}: false},
		},
		{
			name:   "off after on",
			recs:   []Record{kill("waf", "", true, 1), kill("waf", "", false, 2)},
			want:   []Switch{{Stage: "waf", On: false, At: at(2)}},
			killed: map[[2]string]bool{{"waf", ""}: false, {"waf", "shop"}: false},
		},
		{
			name:   "latest by time, not by arrival",
			recs:   []Record{kill("waf", "", true, 2), kill("waf", "", false, 1)},
			want:   []Switch{{Stage: "waf", On: true, At: at(2)}},
			killed: map[[2]string]bool{{"waf", "shop"}: true},
		},
		{
			name: "site off overrides all-sites on, for that site only",
			recs: []Record{kill("bots", "", true, 1), kill("bots", "shop", false, 2)},
			want: []Switch{{Stage: "bots", On: true, At: at(1)}, {Stage: "bots", Site: "shop", On: false, At: at(2)}},
			killed: map[[2]string]bool{
				{"bots", "shop"}: false, {"bots", "blog"}: true, {"bots", ""}: true,
			},
		},
		{
			name: "site on while all-sites off, even when older",
			recs: []Record{kill("ratelimit", "shop", true, 1), kill("ratelimit", "", false, 2)},
			want: []Switch{{Stage: "ratelimit", On: false, At: at(2)}, {Stage: "ratelimit", Site: "shop", On: true, At: at(1)}},
			killed: map[[2]string]bool{
				{"ratelimit", "shop"}: true, {"ratelimit", "blog"}: false, {"ratelimit", ""}: false,
			},
		},
		{
			name: "per stage and site, sorted",
			recs: []Record{
				kill("waf", "shop", true, 1), kill("paycrawl", "", true, 2), kill("bots", "blog", true, 3),
				kill("waf", "", true, 4), kill("waf", "shop", false, 5), kill("bots", "blog", false, 6), kill("bots", "blog", true, 7),
			},
			want: []Switch{
				{Stage: "bots", Site: "blog", On: true, At: at(7)},
				{Stage: "paycrawl", On: true, At: at(2)},
				{Stage: "waf", On: true, At: at(4)},
				{Stage: "waf", Site: "shop", On: false, At: at(5)},
			},
			killed: map[[2]string]bool{
				{"bots", "blog"}: true, {"bots", "shop"}: false, {"paycrawl", "blog"}: true,
				{"waf", "shop"}: false, {"waf", "blog"}: true, {"ratelimit", "blog"}: false,
			},
		},
		{
			name:   "other records are not switches",
			recs:   []Record{halt(hashA, 1), unhealthy(hashA, "edge-fra-01", 2)},
			killed: map[[2]string]bool{{"waf", ""}: false},
		},
	}
	id := keyID(f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewSet()
			for _, rec := range tt.recs {
				f.add(t, c, rec)
			}
			got := c.Switches()
			var want []Switch
			for _, s := range tt.want {
				s.KeyID = id
				want = append(want, s)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Switches() = %+v, want %+v", got, want)
			}
			for k, w := range tt.killed {
				if g := Killed(got, k[0], k[1]); g != w {
					t.Errorf("Killed(%s, %q) = %v, want %v", k[0], k[1], g, w)
				}
			}
		})
	}
}

func TestKilled(t *testing.T) {
	tests := []struct {
		name     string
		switches []Switch
		stage    string
		site     string
		want     bool
	}{
		{"nil", nil, "waf", "shop", false},
		{"all sites on", []Switch{{Stage: "waf", On: true}}, "waf", "shop", true},
		{"all sites on, no site asked", []Switch{{Stage: "waf", On: true}}, "waf", "", true},
		{"other stage", []Switch{{Stage: "bots", On: true}}, "waf", "shop", false},
		{"site on", []Switch{{Stage: "waf", Site: "shop", On: true}}, "waf", "shop", true},
		{"other site on", []Switch{{Stage: "waf", Site: "blog", On: true}}, "waf", "shop", false},
		{"site on, no site asked", []Switch{{Stage: "waf", Site: "shop", On: true}}, "waf", "", false},
		{"site off beats all on", []Switch{{Stage: "waf", On: true}, {Stage: "waf", Site: "shop"}}, "waf", "shop", false},
		{"site off beats all on, site listed first", []Switch{{Stage: "waf", Site: "shop"}, {Stage: "waf", On: true}}, "waf", "shop", false},
		{"site on beats all off", []Switch{{Stage: "waf"}, {Stage: "waf", Site: "shop", On: true}}, "waf", "shop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Killed(tt.switches, tt.stage, tt.site); got != tt.want {
				t.Errorf("Killed = %v, want %v", got, tt.want)
			}
		})
	}
}

// Beyond MaxRecords the oldest records go, but the newest record of each kill switch stays
// however old it is, and the set never holds more than MaxRecords.
func TestSetPruneKeepsSwitches(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	c := NewSet()
	f.add(t, c, kill("waf", "", false, 0))     // superseded: may go
	f.add(t, c, kill("waf", "", true, 1))      // in force: stays
	f.add(t, c, kill("bots", "shop", true, 2)) // in force: stays
	const extra = 600
	for i := range extra {
		n := 100 + i
		var rec Record
		switch i % 3 {
		case 0:
			rec = halt(hashA, n)
		case 1:
			rec = unhealthy(hashB, fmt.Sprintf("edge-fra-%03d", i), n)
		default:
			rec = unhealthy(hashA, fmt.Sprintf("edge-ams-%03d", i), n)
		}
		if _, isNew, err := c.Add(v, f.sign(t, rec)); err != nil || !isNew {
			t.Fatalf("Add %d: isNew=%v, err=%v", i, isNew, err)
		}
		if got := len(c.Signed()); got > MaxRecords {
			t.Fatalf("after %d records the set holds %d, limit %d", i+1, got, MaxRecords)
		}
	}
	recs := c.Records()
	if len(recs) != MaxRecords {
		t.Fatalf("set holds %d records, want %d", len(recs), MaxRecords)
	}
	sw := c.Switches()
	if !Killed(sw, "waf", "blog") || !Killed(sw, "bots", "shop") || Killed(sw, "bots", "blog") {
		t.Errorf("kill switches lost: %+v", sw)
	}
	if len(sw) != 2 {
		t.Errorf("Switches() = %+v, want waf and bots/shop", sw)
	}
	// Besides the two switches in force, the newest of the other records remain.
	var rest []int64
	for _, r := range recs {
		if r.Kind != KindKillSwitch {
			rest = append(rest, r.At)
		}
	}
	if len(rest) != MaxRecords-2 || rest[0] != at(100+extra-(MaxRecords-2)) || rest[len(rest)-1] != at(100+extra-1) {
		t.Errorf("kept %d other records from %d to %d, want the newest %d", len(rest), rest[0], rest[len(rest)-1], MaxRecords-2)
	}

	// A record older than everything kept is not kept when the set is full, and is not
	// reported as new (an operator record that decides a bundle's state would be: see
	// pruneLocked).
	old := f.sign(t, unhealthy(hashB, "edge-old", 50))
	if _, isNew, err := c.Add(v, old); err != nil || isNew {
		t.Errorf("Add(old record to a full set): isNew=%v, err=%v; want false, nil", isNew, err)
	}
	if n := len(c.Signed()); n != MaxRecords {
		t.Errorf("set holds %d records, want %d", n, MaxRecords)
	}
	for _, s := range c.Signed() {
		if s.ID() == old.ID() {
			t.Errorf("old report was kept in a full set")
		}
	}
	// A newer switch replaces the old one as the one that is kept.
	f.add(t, c, kill("waf", "", false, 100+extra))
	if Killed(c.Switches(), "waf", "blog") || !Killed(c.Switches(), "bots", "shop") {
		t.Errorf("after waf off: %+v", c.Switches())
	}
	if n := len(c.Signed()); n != MaxRecords {
		t.Errorf("set holds %d records, want %d", n, MaxRecords)
	}
}

// A Set is safe for concurrent use (run with -race).
func TestSetConcurrent(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	var signed []Signed
	for i := range 64 {
		var rec Record
		switch i % 4 {
		case 0:
			rec = halt(hashA, i)
		case 1:
			rec = resume(hashA, i)
		case 2:
			rec = unhealthy(hashB, "edge-fra-01", i)
		default:
			rec = kill(Stages[i%len(Stages)], "", i%8 == 3, i)
		}
		signed = append(signed, f.sign(t, rec))
	}
	c := NewSet()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range signed {
				s := signed[(i+g*7)%len(signed)]
				if _, _, err := c.Add(v, s); err != nil {
					t.Error(err)
				}
				_ = c.Bundle(hashA)
				_ = Killed(c.Switches(), "waf", "shop")
				_ = c.Digest()
				_ = c.Records()
			}
		})
	}
	wg.Wait()
	ref := NewSet()
	for _, s := range signed {
		if _, _, err := ref.Add(v, s); err != nil {
			t.Fatal(err)
		}
	}
	if c.Digest() != ref.Digest() || c.Bundle(hashA) != ref.Bundle(hashA) || !slices.Equal(c.Switches(), ref.Switches()) {
		t.Errorf("concurrent set differs from a sequential one")
	}
}

// One node's unhealthy reports beyond MaxReportsPerNode go first, so a node (or a rogue
// one) cannot crowd out the records that decide a bundle's state, such as a rollback.
func TestSetCapsReportsPerNode(t *testing.T) {
	f := newFixture(t)
	v := f.verifier()
	c := NewSet()
	f.add(t, c, Record{Kind: KindRollback, Bundle: hashA, At: at(1)})
	for i := range 2000 {
		c.Add(v, f.sign(t, unhealthy(hashB, "edge-fra-01", 10+i)))
	}
	if !c.Bundle(hashA).Rollback {
		t.Fatal("a flood of one node's reports lifted a rollback")
	}
	n := 0
	for _, r := range c.Records() {
		if r.Kind == KindUnhealthy {
			n++
		}
	}
	if n != MaxReportsPerNode {
		t.Fatalf("kept %d reports of one node, want %d", n, MaxReportsPerNode)
	}
}
