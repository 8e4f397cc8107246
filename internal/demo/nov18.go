package demo

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"rhizome/internal/bots"
	"rhizome/internal/bundle"
)

// Scorecard is what the nov18 scenario measured.
type Scorecard struct {
	Nodes  int
	Counts Counts // the synthetic traffic over the whole run
	Rate   float64
	// Step 1: the oversized bundle.
	OversizedRefusedBy int
	OversizedRanOn     int
	// Step 2: the bundle that breaks the bot stage at run time.
	BadSerial       uint64
	BadRanOn        []string      // nodes that ever ran it
	Recovered       time.Duration // from the first node activating it to the last going back
	StagePanics     uint64        // bot stage panics recovered (requests served with the stage bypassed)
	FailedDuringBad uint64        // client-visible failures while it ran
	Halted          bool
	// Step 3: two nodes killed.
	Killed      []string
	DNSRemoval  time.Duration // until no live nameserver answered a killed node
	FailedKills uint64
	// Step 4: the primary origin dies.
	FailedOrigin     uint64
	ServedBackup     uint64 // origin requests the backup served during the step
	OriginMarkedDown time.Duration
	// Step 5: the node the operator pushed from is gone.
	Converged time.Duration
	// Checks are the pass/fail lines; Passed is all of them.
	Checks []Check
	Passed bool
}

// Check is one verdict of the scenario.
type Check struct {
	What string
	OK   bool
}

func (s *Scorecard) check(what string, ok bool) {
	s.Checks = append(s.Checks, Check{what, ok})
}

// Nov18 replays the failure of 18 November 2025 on a demo mesh and shows it contained:
// a config file twice its limit, a bundle that breaks the bot stage at run time, nodes
// dying, the primary origin dying, and the operator's own node gone. It returns the
// scorecard; Passed says whether the network survived.
// With hold, it keeps the mesh running after the scorecard until ctx ends, so that the
// dashboard can still be looked at.
func Nov18(ctx context.Context, o Options, hold bool) (*Scorecard, error) {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.Nodes < 4 {
		return nil, fmt.Errorf("nodes: the scenario kills two nodes and needs at least 4")
	}
	o.NoTraffic = false
	m, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	sc := &Scorecard{Nodes: len(m.Members)}
	out := m.opts.Out
	began := time.Now()
	step := func(format string, args ...any) { m.printf("=== "+format, args...) }
	pause := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	if err := pause(3 * time.Second); err != nil {
		return nil, err
	}

	// 1. A bundle whose bot feature list is twice the limit.
	step("1. a bundle whose crawler (bot feature) list is twice the limit, pushed to every node")
	before := m.Traffic.Counts().Failed
	raw, serial, err := m.oversized()
	if err != nil {
		return nil, err
	}
	for i, mb := range m.Members {
		if err := m.pushRaw(i, raw); err != nil {
			sc.OversizedRefusedBy++
		} else {
			m.printf("%s TOOK the oversized bundle", mb.Name)
		}
	}
	if err := pause(time.Second); err != nil {
		return nil, err
	}
	sc.OversizedRanOn = len(m.events.ranBundle(serial))
	sc.check(fmt.Sprintf("oversized bundle refused by every node (%d of %d), run by none", sc.OversizedRefusedBy, sc.Nodes),
		sc.OversizedRefusedBy == sc.Nodes && sc.OversizedRanOn == 0)
	sc.check("no client error while it was pushed", m.Traffic.Counts().Failed == before)

	// 2. A bundle that passes validation but breaks the bot stage at run time.
	step("2. a bundle that passes every check but breaks the bot stage at run time (a latent bug)")
	before = m.Traffic.Counts().Failed
	panicsBefore := m.stagePanics("bots")
	poison := fmt.Sprintf("    - {name: %s, category: other, user_agents: [%s]}\n", m.poison, m.poison)
	sc.BadSerial, err = m.Push(0, m.Config([]string{poison}))
	if err != nil {
		return nil, fmt.Errorf("bad bundle: %w", err)
	}
	m.printf("pushed bundle %d to %s; it passed validation, signatures and the self-test", sc.BadSerial, m.Members[0].Name)
	// Done when the rollout stopped and no node runs it any more.
	err = m.waitFor(ctx, 40*time.Second, "the bad bundle to be stopped and rolled back", func() bool {
		ran := m.events.ranBundle(sc.BadSerial)
		if len(ran) == 0 {
			return false
		}
		for _, mb := range m.Members {
			if st := mb.Node.State(); st.Active != nil && st.Active.Serial == sc.BadSerial {
				return false
			}
		}
		return true
	})
	if err != nil {
		m.printf("%v", err)
	}
	ran, left := m.events.ranBundle(sc.BadSerial), m.events.leftBundle(sc.BadSerial)
	var first, last time.Time
	for name, t := range ran {
		sc.BadRanOn = append(sc.BadRanOn, name)
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	slices.Sort(sc.BadRanOn)
	for _, t := range left {
		if t.After(last) {
			last = t
		}
	}
	if !first.IsZero() && !last.IsZero() {
		sc.Recovered = last.Sub(first)
	}
	sc.StagePanics = m.stagePanics("bots") - panicsBefore
	sc.FailedDuringBad = m.Traffic.Counts().Failed - before
	for _, mb := range m.Members {
		if r := mb.Node.State().Rollout; r != nil && r.Serial == sc.BadSerial && r.Stopped != nil {
			sc.Halted = true
		}
	}
	sc.check(fmt.Sprintf("bad bundle ran on %d of %d nodes (the first wave) %v", len(sc.BadRanOn), sc.Nodes, sc.BadRanOn), err == nil && len(sc.BadRanOn) == 1)
	sc.check(fmt.Sprintf("the failing stage was bypassed (%d panics recovered), no 5xx (%d client failures)", sc.StagePanics, sc.FailedDuringBad), sc.FailedDuringBad == 0)
	sc.check("the rollout halted and the first wave is back on the last good bundle", sc.Halted && m.Converged(1))
	// Back on the last good bundle means its stage settings too: the bot stage stops failing.
	panicsAfter := m.stagePanics("bots")
	if err := pause(2 * time.Second); err != nil {
		return nil, err
	}
	stillFailing := m.stagePanics("bots") - panicsAfter
	sc.check(fmt.Sprintf("the bot stage stopped failing after the rollback (%d panics since)", stillFailing), stillFailing == 0)

	// 3. Two nodes die, the one the operator pushed from among them.
	step("3. two of %d nodes killed (kill -9): %s, the operator's node, and %s", sc.Nodes, m.Members[0].Name, m.Members[len(m.Members)-2].Name)
	before = m.Traffic.Counts().Failed
	victims := []int{0, len(m.Members) - 2}
	killedAt := time.Now()
	dead := map[string]bool{}
	for _, i := range victims {
		m.Kill(i)
		sc.Killed = append(sc.Killed, m.Members[i].Name)
		dead[m.Members[i].IP] = true
	}
	err = m.waitFor(ctx, 20*time.Second, "DNS to stop answering the killed nodes", func() bool { return m.dnsClean(dead) })
	sc.DNSRemoval = time.Since(killedAt)
	if err == nil {
		m.printf("no nameserver answers %s any more: %.1fs after the kill", strings.Join(sc.Killed, " or "), sc.DNSRemoval.Seconds())
	}
	if err := pause(2 * time.Second); err != nil {
		return nil, err
	}
	sc.FailedKills = m.Traffic.Counts().Failed - before
	sc.check(fmt.Sprintf("killed nodes left DNS answers in %.1fs", sc.DNSRemoval.Seconds()), err == nil && sc.DNSRemoval < 10*time.Second)
	sc.check(fmt.Sprintf("no client request failed (%d; %d retried on another address before DNS caught up)", sc.FailedKills, m.Traffic.Counts().Retries), sc.FailedKills == 0)

	// 4. The primary origin dies.
	step("4. the primary origin (provider A) dies")
	before = m.Traffic.Counts().Failed
	backupBefore := m.Backup.Origin.Hits.Load()
	diedAt := time.Now()
	m.Primary.Kill()
	err = m.waitFor(ctx, 10*time.Second, "the nodes to mark the primary down", func() bool { return m.originDown(m.Primary.URL) })
	sc.OriginMarkedDown = time.Since(diedAt)
	if err := pause(3 * time.Second); err != nil {
		return nil, err
	}
	sc.FailedOrigin = m.Traffic.Counts().Failed - before
	sc.ServedBackup = uint64(m.Backup.Origin.Hits.Load() - backupBefore)
	sc.check(fmt.Sprintf("traffic moved to the backup origin (%d requests) with no client error (%d)", sc.ServedBackup, sc.FailedOrigin),
		err == nil && sc.FailedOrigin == 0 && sc.ServedBackup > 0)

	// 5. The node the operator pushed from is gone: push through another.
	step("5. the operator's node is gone: the next bundle goes to %s", m.Members[1].Name)
	pushedAt := time.Now()
	serial, err = m.Push(1, m.Config(nil))
	if err != nil {
		return nil, fmt.Errorf("bundle after the losses: %w", err)
	}
	err = m.waitFor(ctx, 40*time.Second, "the survivors to converge", func() bool { return m.Converged(serial) })
	sc.Converged = time.Since(pushedAt)
	sc.check(fmt.Sprintf("the %d survivors converged on bundle %d in %.1fs (waves included)", sc.Nodes-len(victims), serial, sc.Converged.Seconds()), err == nil)

	if err := pause(time.Second); err != nil {
		return nil, err
	}
	m.Traffic.Stop()
	sc.Counts = m.Traffic.Counts()
	sc.Rate = float64(sc.Counts.Sent) / time.Since(began).Seconds()
	sc.check(fmt.Sprintf("requests: %d sent, %d failed", sc.Counts.Sent, sc.Counts.Failed), sc.Counts.Failed == 0)
	sc.Passed = true
	for _, c := range sc.Checks {
		sc.Passed = sc.Passed && c.OK
	}
	sc.Print(out)
	if hold {
		fmt.Fprintln(out, "\nthe mesh keeps running for the dashboard; Ctrl-C stops everything.")
		<-ctx.Done()
	}
	return sc, nil
}

// oversized signs, without the checks `rhizome bundle sign` makes (as a broken pipeline
// would), a bundle whose crawler list is twice the limit.
func (m *Mesh) oversized() ([]byte, uint64, error) {
	serial := m.serial.Add(1)
	cfg, err := bundle.ParseSource([]byte(fmt.Sprintf("serial: %d\n%s", serial, m.Config(nil))))
	if err != nil {
		return nil, 0, err
	}
	for i := range 2 * bots.MaxCrawlers {
		name := fmt.Sprintf("feature-%04d", i)
		cfg.Crawlers.List = append(cfg.Crawlers.List, bots.Crawler{Name: name, Category: "other", UserAgents: []string{name}})
	}
	s, err := bundle.SignUnchecked(&bundle.Body{Serial: serial, Created: time.Now().UTC(), Config: cfg}, m.key)
	if err != nil {
		return nil, 0, err
	}
	b, err := s.Encode()
	return b, serial, err
}

// stagePanics sums a stage's recovered panics over the live nodes.
func (m *Mesh) stagePanics(stage string) uint64 {
	var n uint64
	for _, mb := range m.Members {
		if mb.Killed() {
			continue
		}
		if st := mb.Node.State().Stages; st != nil {
			n += st.Driver[stage].Panics
		}
	}
	return n
}

// dnsClean reports whether no live nameserver answers any of the dead addresses (three
// queries each: answers are drawn at random).
func (m *Mesh) dnsClean(dead map[string]bool) bool {
	c := &mdns.Client{Timeout: 300 * time.Millisecond}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(Site), mdns.TypeA)
	for i, mb := range m.Members {
		if mb.Killed() {
			continue
		}
		for range 3 {
			in, _, err := c.Exchange(q, m.DNSAddr(i))
			if err != nil {
				return false
			}
			for _, rr := range in.Answer {
				if a, ok := rr.(*mdns.A); ok && dead[a.A.String()] {
					return false
				}
			}
		}
	}
	return true
}

// originDown reports whether every live node stopped sending to the origin.
func (m *Mesh) originDown(url string) bool {
	for _, mb := range m.Members {
		if mb.Killed() {
			continue
		}
		for _, g := range mb.Node.Edge.Proxy.Upstreams() {
			for _, p := range g.Pools {
				for _, o := range p.Origins {
					if o.URL == url && o.State == "healthy" {
						return false
					}
				}
			}
		}
	}
	return true
}

// Print writes the scorecard.
func (s *Scorecard) Print(w io.Writer) {
	fmt.Fprintf(w, "\n================ scorecard: 18 November 2025, replayed on %d nodes ================\n", s.Nodes)
	c := s.Counts
	fmt.Fprintf(w, "requests: %d sent (%.0f/s), %d answered without failure, %d failed, %d retried on another node\n", c.Sent, s.Rate, c.Served, c.Failed, c.Retries)
	fmt.Fprintln(w, "outcomes:")
	for _, l := range c.Lines() {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintf(w, "blast radius of the bad bundle: %d of %d nodes ever ran it %v\n", len(s.BadRanOn), s.Nodes, s.BadRanOn)
	fmt.Fprintf(w, "time to recover: %.1fs from its activation to the last node back on the last good bundle\n", s.Recovered.Seconds())
	fmt.Fprintf(w, "bot stage failures contained: %d panics recovered, the stage bypassed for those requests, 0 errors\n", s.StagePanics)
	fmt.Fprintf(w, "killed nodes %v out of DNS in %.1fs; primary origin marked down in %.1fs, backup served %d requests\n",
		s.Killed, s.DNSRemoval.Seconds(), s.OriginMarkedDown.Seconds(), s.ServedBackup)
	fmt.Fprintf(w, "operator's node gone: the survivors converged on a new bundle in %.1fs\n", s.Converged.Seconds())
	// The counterfactual: the same bundle pushed everywhere at once.
	window := s.Recovered.Seconds()
	perNode := s.Rate / float64(s.Nodes)
	fmt.Fprintf(w, "\nwhat a single global push would have done with the same bundle and traffic:\n")
	fmt.Fprintf(w, "  the failing bot stage on %d of %d nodes at once, for the %.1fs it took to notice: about %.0f requests\n",
		s.Nodes, s.Nodes, window, s.Rate*window)
	fmt.Fprintf(w, "  instead of about %.0f on the one canary; had the stage failed closed or crashed the proxy,\n", perNode*window)
	fmt.Fprintf(w, "  as on 18 November, all %.0f would have been errors, and with no wave to stop it, nothing\n", s.Rate*window)
	fmt.Fprintf(w, "  would have rolled it back: every request after it, everywhere, until an operator acted.\n")
	fmt.Fprintln(w)
	for _, ch := range s.Checks {
		mark := "ok  "
		if !ch.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  [%s] %s\n", mark, ch.What)
	}
	if s.Passed {
		fmt.Fprintln(w, "\nthe network survived.")
	} else {
		fmt.Fprintln(w, "\nTHE NETWORK DID NOT SURVIVE every step: see the FAIL lines above.")
	}
}
